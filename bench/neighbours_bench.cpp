// Whether broken customers slow the healthy ones: H SQS targets on a local nginx answering
// SendMessage, sent W waves of one message each, through one RoutingDestination — alone (the
// reference, measured in the same run), then with D broken targets beside them receiving a
// message each wave too (half on a server answering 503, half on a port that refuses
// connections), with the router's default breakers and with breakers off. Prints, per healthy
// message, wall time and this process's CPU time, the healthy messages' p50 and p99 latency,
// and how many of the broken targets' messages the breakers refused without a request.
//
// Usage: neighbours_bench [HEALTHY] [BROKEN] [WAVES]   (defaults 200, 40, 50)
#include "bench_support.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/routing_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string queue_url(std::uint16_t port, const std::string& name) {
    return "http://127.0.0.1:" + std::to_string(port) + "/000000000000/" + name;
}

// A port with nothing listening: bound, then closed.
std::uint16_t refused_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = a.local_endpoint().port();
    a.close();
    return port;
}

struct Result {
    double wall_us = 0, cpu_us = 0;  // per healthy message
    double p50_ms = 0, p99_ms = 0;
    std::size_t healthy_failed = 0, broken_refused = 0;
};

Result run(std::size_t healthy, std::size_t broken, std::size_t waves, bool breakers,
           std::uint16_t ok_port, std::uint16_t unavailable_port, std::uint16_t refused) {
    asio::io_context io;
    auto credentials = outbox::make_static_credentials(io.get_executor(), {"AKID", "secret"});
    outbox::RoutingDestinationConfig config;
    config.max_destinations = healthy + broken + 1;
    if (!breakers) config.breaker.failures_to_open = 0;
    config.make_destination = [&](const std::string& url) {
        outbox::SqsDestinationConfig c;
        c.queue_url = url;
        c.region = "us-east-1";
        c.max_message_size = 262144;  // no lookup first
        c.linger = 0ms;
        c.credentials = credentials;
        // Short retries, so a run without breakers ends: 3 attempts within 5 s.
        c.retry.max_attempts = 3;
        c.retry.base_delay = 20ms;
        c.retry.message_deadline = 5s;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
    outbox::RoutingDestination router(io.get_executor(), config);
    std::vector<std::string> healthy_urls, broken_urls;
    for (std::size_t i = 0; i < healthy; ++i)
        healthy_urls.push_back(queue_url(ok_port, "healthy-" + std::to_string(i)));
    for (std::size_t i = 0; i < broken; ++i)
        broken_urls.push_back(
            queue_url(i % 2 ? refused : unavailable_port, "broken-" + std::to_string(i)));
    const std::string body = outbox::bench::body_of_1kib();
    std::vector<double> latencies_ms;
    latencies_ms.reserve(healthy * waves);
    Result result;
    std::size_t healthy_done = 0, broken_done = 0;
    rusage before_usage{};
    ::getrusage(RUSAGE_SELF, &before_usage);
    const auto start = Clock::now();
    for (std::size_t wave = 0; wave < waves; ++wave) {
        for (std::size_t i = 0; i < healthy + broken; ++i) {
            const bool is_healthy = i < healthy;
            outbox::Message m;
            m.body = body;
            m.target = is_healthy ? healthy_urls[i] : broken_urls[i - healthy];
            const auto sent = Clock::now();
            router.async_send(
                std::move(m), [&, is_healthy, sent](boost::system::error_code ec, outbox::Receipt) {
                    if (!is_healthy) {
                        ++broken_done;
                        if (ec == outbox::Errc::target_unavailable) ++result.broken_refused;
                        return;
                    }
                    ++healthy_done;
                    if (ec) ++result.healthy_failed;
                    latencies_ms.push_back(
                        std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
                });
        }
        // The next wave when this one's healthy messages are done (a steady stream).
        while (healthy_done < healthy * (wave + 1) && io.run_one() != 0) {
        }
    }
    const auto wall = Clock::now() - start;
    rusage after_usage{};
    ::getrusage(RUSAGE_SELF, &after_usage);
    const double n = static_cast<double>(healthy * waves);
    result.wall_us = std::chrono::duration<double, std::micro>(wall).count() / n;
    result.cpu_us =
        (outbox::bench::cpu_seconds(after_usage) - outbox::bench::cpu_seconds(before_usage)) * 1e6 /
        n;
    std::sort(latencies_ms.begin(), latencies_ms.end());
    result.p50_ms = latencies_ms[latencies_ms.size() / 2];
    result.p99_ms = latencies_ms[latencies_ms.size() * 99 / 100];
    // The broken ones' messages still retrying end before the router closes.
    while (broken_done < broken * waves && io.run_one() != 0) {
    }
    bool closed = false;
    router.async_close(10s, [&](boost::system::error_code) { closed = true; });
    while (!closed && io.run_one() != 0) {
    }
    return result;
}

void row(const char* what, const Result& r, const Result* reference) {
    std::printf("  %-40s %7.1f us wall %7.1f us CPU  p50 %6.2f ms  p99 %6.2f ms", what, r.wall_us,
                r.cpu_us, r.p50_ms, r.p99_ms);
    if (reference)
        std::printf("  (%.2fx wall, %.2fx CPU)", r.wall_us / reference->wall_us,
                    r.cpu_us / reference->cpu_us);
    std::printf("  healthy failed %zu, broken refused at once %zu\n", r.healthy_failed,
                r.broken_refused);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t healthy = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200;
    const std::size_t broken = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 40;
    const std::size_t waves = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 50;
    const std::string body = outbox::bench::body_of_1kib();
    outbox::bench::Nginx ok("default_type application/x-amz-json-1.0; return 200 '" +
                            outbox::bench::canned_single_reply(body) + "';");
    outbox::bench::Nginx unavailable(
        "default_type application/x-amz-json-1.0; return 503 "
        "'{\"__type\":\"com.amazonaws.sqs#ServiceUnavailable\",\"message\":\"down\"}';");
    const std::uint16_t refused = refused_port();
    std::printf(
        "Healthy targets beside broken ones: %zu healthy SQS targets, %zu waves of one message\n"
        "each; %zu broken targets (half answering 503, half refusing connections) get one too.\n"
        "Per healthy message, one RoutingDestination, 3 attempts per message:\n",
        healthy, waves, broken);
    const Result alone = run(healthy, 0, waves, true, ok.port(), unavailable.port(), refused);
    row("reference: healthy targets alone", alone, nullptr);
    const Result guarded =
        run(healthy, broken, waves, true, ok.port(), unavailable.port(), refused);
    row("beside broken ones, breakers (default)", guarded, &alone);
    const Result unguarded =
        run(healthy, broken, waves, false, ok.port(), unavailable.port(), refused);
    row("beside broken ones, breakers off", unguarded, &alone);
    outbox::bench::print_figure("neighbours_bench", "healthy beside broken / alone (breakers)",
                                guarded.wall_us, alone.wall_us, "us wall/healthy message", 1.10);
    outbox::bench::print_latency("neighbours_bench", "healthy targets alone", alone.p50_ms, -1,
                                 alone.p99_ms, -1);
    outbox::bench::print_latency("neighbours_bench", "healthy beside broken, breakers",
                                 guarded.p50_ms, -1, guarded.p99_ms, -1);
    // The reference again: how far this machine's noise moves the same run.
    row("reference again", run(healthy, 0, waves, true, ok.port(), unavailable.port(), refused),
        &alone);
    return 0;
}
