// HttpClient over kept-alive loopback connections against nginx answering a fixed body,
// beside wrk against the same server in the same run. Prints requests per second and client
// CPU per request (user + system time of the client process) for both.
//
// Usage: http_bench [REQUESTS] [WRK_SECONDS]   (needs nginx and wrk on PATH)
#include "bench_support.hpp"

#include <outbox/http_client.hpp>

#include <boost/asio/io_context.hpp>

#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>

using outbox::bench::cpu_seconds;
using outbox::bench::Nginx;
using Clock = std::chrono::steady_clock;

namespace {

struct Figures {
    double requests_per_second;
    double cpu_us_per_request;
    long requests;
};

Figures run_outbox(std::uint16_t port, long total, int concurrency) {
    boost::asio::io_context io(1);  // one thread runs it: no scheduler locking
    outbox::HttpClient client(
        io.get_executor(), {.max_connections_per_origin = static_cast<std::size_t>(concurrency)});
    outbox::HttpRequest req;
    req.origin = {.tls = false, .host = "127.0.0.1", .port = port};
    long started = 0, done = 0, failed = 0;
    std::function<void()> launch = [&] {
        ++started;
        client.async_request(req, [&](boost::system::error_code ec, outbox::HttpResponse r) {
            ++done;
            if (ec || r.status != 200) ++failed;
            if (started < total) launch();
        });
    };
    // Warm up: open the connections.
    for (int i = 0; i < concurrency; ++i) launch();
    while (done < concurrency && io.run_one()) {
    }
    started = done = 0;
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    const auto t0 = Clock::now();
    for (int i = 0; i < concurrency; ++i) launch();
    while (done < total && io.run_one()) {
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    ::getrusage(RUSAGE_SELF, &after);
    if (failed) std::cerr << "outbox: " << failed << " requests failed\n";
    return {static_cast<double>(total) / seconds,
            (cpu_seconds(after) - cpu_seconds(before)) * 1e6 / static_cast<double>(total), total};
}

Figures run_wrk(std::uint16_t port, int concurrency, int seconds) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        const std::string c = "-c" + std::to_string(concurrency),
                          d = "-d" + std::to_string(seconds) + "s";
        const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
        ::execlp("wrk", "wrk", "-t1", c.c_str(), d.c_str(), url.c_str(),
                 static_cast<char*>(nullptr));
        std::_Exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    rusage usage{};
    ::wait4(pid, &status, 0, &usage);
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(R"((\d+) requests in ([0-9.]+)s)")))
        throw std::runtime_error("unexpected wrk output:\n" + text);
    const long requests = std::stol(m[1]);
    const double secs = std::stod(m[2]);
    return {static_cast<double>(requests) / secs,
            cpu_seconds(usage) * 1e6 / static_cast<double>(requests), requests};
}

}  // namespace

int main(int argc, char** argv) {
    const long requests = argc > 1 ? std::atol(argv[1]) : 100000;
    const int wrk_seconds = argc > 2 ? std::atoi(argv[2]) : 5;
    Nginx nginx("return 200 \"ok\\n\";");
    std::printf(
        "HttpClient vs wrk, nginx on 127.0.0.1:%u answering \"ok\\n\", kept-alive connections\n\n",
        nginx.port());
    std::printf("%-34s %14s %22s %12s\n", "client", "requests/s", "client CPU us/request",
                "requests");
    for (int concurrency : {1, 16}) {
        const Figures ours = run_outbox(nginx.port(), requests, concurrency);
        const Figures wrk = run_wrk(nginx.port(), concurrency, wrk_seconds);
        std::printf("%-34s %14.0f %22.2f %12ld\n",
                    ("outbox::HttpClient, " + std::to_string(concurrency) + " in flight").c_str(),
                    ours.requests_per_second, ours.cpu_us_per_request, ours.requests);
        std::printf("%-34s %14.0f %22.2f %12ld\n",
                    ("wrk -t1 -c" + std::to_string(concurrency)).c_str(), wrk.requests_per_second,
                    wrk.cpu_us_per_request, wrk.requests);
        outbox::bench::print_figure(
            "http_bench", "HttpClient / wrk, " + std::to_string(concurrency) + " in flight",
            ours.cpu_us_per_request, wrk.cpu_us_per_request, "us CPU/request", 0);
    }
    return 0;
}
