// What a target costs a process that serves many customers: memory and threads per idle
// SqsDestination (made and never used; after one delivery, its connection kept alive), per
// idle KafkaDestination, and N SQS targets behind a RoutingDestination before and after they
// are forgotten as idle — beside the reference of N bare keep-alive TCP connections to the
// same server, measured in the same run. Memory is the process's resident set after
// malloc_trim, so freed memory counts as returned.
//
// Usage: targets_bench [TARGETS] [KAFKA_DESTINATIONS]   (defaults 2000 and 10)
#include "bench_support.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/routing_destination.hpp>
#include <outbox/sqs_destination.hpp>
#ifdef OUTBOX_BENCH_KAFKA
#include <outbox/kafka_destination.hpp>
#endif

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

long threads_now() {
    std::ifstream status("/proc/self/status");
    std::string key;
    long value = 0;
    while (status >> key) {
        if (key == "Threads:") {
            status >> value;
            return value;
        }
        status.ignore(4096, '\n');
    }
    return 0;
}

struct Reading {
    long kib;
    long threads;
};

Reading now() {
    ::malloc_trim(0);
    return {outbox::bench::resident_kib(), threads_now()};
}

void row(const char* what, std::size_t n, const Reading& before, const Reading& after) {
    const double kib = static_cast<double>(after.kib - before.kib);
    std::printf("  %-58s %8.2f KiB  %6.2f threads  (%ld KiB, %+ld threads for %zu)\n", what,
                kib / static_cast<double>(n),
                static_cast<double>(after.threads - before.threads) / static_cast<double>(n),
                after.kib - before.kib, after.threads - before.threads, n);
}

std::string queue_url(std::uint16_t port, std::size_t i) {
    return "http://127.0.0.1:" + std::to_string(port) + "/000000000000/customer-" +
           std::to_string(i);
}

outbox::SqsDestinationConfig sqs_config(const std::string& url,
                                        outbox::CredentialsProviderPtr credentials) {
    outbox::SqsDestinationConfig c;
    c.queue_url = url;
    c.region = "us-east-1";
    c.max_message_size = 262144;  // no lookup first
    c.linger = 0ms;
    c.credentials = std::move(credentials);
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t targets = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2000;
    const std::size_t kafka_count = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10;
    const std::string body = outbox::bench::body_of_1kib();
    outbox::bench::Nginx nginx("default_type application/x-amz-json-1.0; return 200 '" +
                               outbox::bench::canned_single_reply(body) + "';");
    asio::io_context io;
    auto credentials = outbox::make_static_credentials(io.get_executor(), {"AKID", "secret"});
    std::printf(
        "What a target costs: %zu SQS targets (nginx answering SendMessage), %zu Kafka\n"
        "destinations; per target, resident memory after malloc_trim and threads\n",
        targets, kafka_count);
    const Reading start = now();

    {  // The reference: a bare keep-alive TCP connection per target.
        std::vector<asio::ip::tcp::socket> sockets;
        sockets.reserve(targets);
        const asio::ip::tcp::endpoint server(asio::ip::make_address("127.0.0.1"), nginx.port());
        const Reading before = now();
        for (std::size_t i = 0; i < targets; ++i) sockets.emplace_back(io).connect(server);
        row("reference: a connected TCP socket", targets, before, now());
    }

    {  // SqsDestinations made and never used.
        const Reading before = now();
        std::vector<std::unique_ptr<outbox::SqsDestination>> made;
        for (std::size_t i = 0; i < targets; ++i)
            made.push_back(std::make_unique<outbox::SqsDestination>(
                io.get_executor(), sqs_config(queue_url(nginx.port(), i), credentials)));
        row("SqsDestination, made, never used", targets, before, now());
        made.clear();
        io.restart();
        io.run();
    }

    {  // N targets behind a router, one delivery each, then forgotten as idle.
        outbox::RoutingDestinationConfig config;
        config.max_destinations = targets + 1;
        config.idle_timeout = 20ms;
        config.make_destination = [&](const std::string& url) {
            return std::make_unique<outbox::SqsDestination>(io.get_executor(),
                                                            sqs_config(url, credentials));
        };
        outbox::RoutingDestination router(io.get_executor(), config);
        const Reading before = now();
        std::size_t done = 0, failed = 0;
        auto send_to = [&](const std::string& url) {
            outbox::Message m;
            m.body = body;
            m.target = url;
            router.async_send(std::move(m), [&](boost::system::error_code ec, outbox::Receipt) {
                ++done;
                if (ec) ++failed;
            });
        };
        for (std::size_t i = 0; i < targets; ++i) send_to(queue_url(nginx.port(), i));
        io.restart();
        while (done < targets && io.run_one() != 0) {
        }
        row("SQS target after one delivery (router, connection kept)", targets, before, now());
        // Idle for the timeout, then one message elsewhere: every other target is forgotten.
        asio::steady_timer idle(io, 50ms);
        idle.wait();
        send_to(queue_url(nginx.port(), targets));
        io.restart();
        while (done < targets + 1 && io.run_one() != 0) {
        }
        io.restart();
        io.poll();  // the forgotten destinations' closes
        row("SQS target forgotten as idle (vs before the router)", targets, before, now());
        std::printf("  (%zu delivered, %zu failed; %llu forgotten)\n", done - failed, failed,
                    static_cast<unsigned long long>(router.evicted_count()));
        router.async_close(1s, [](boost::system::error_code) {});
        io.restart();
        io.run();
    }

#ifdef OUTBOX_BENCH_KAFKA
    {  // KafkaDestinations made and idle: librdkafka's threads and buffers per producer.
        const Reading before = now();
        std::vector<std::unique_ptr<outbox::KafkaDestination>> made;
        for (std::size_t i = 0; i < kafka_count; ++i)
            made.push_back(std::make_unique<outbox::KafkaDestination>(
                io.get_executor(),
                outbox::KafkaDestinationConfig{.bootstrap_servers = "127.0.0.1:9",
                                               .topic = "customer-" + std::to_string(i),
                                               .security = outbox::KafkaSecurity::plaintext}));
        row("KafkaDestination, made, idle (one bootstrap broker)", kafka_count, before, now());
    }
#endif
    const Reading end = now();
    std::printf("  process: %ld KiB and %ld threads at the start, %ld KiB and %ld at the end\n",
                start.kib, start.threads, end.kib, end.threads);
    return 0;
}
