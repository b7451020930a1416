// SqsDestination against nginx answering a canned SendMessageBatch reply (10 entries, the
// MD5 of the benchmark's body), beside curl signing the same batches itself (--aws-sigv4,
// one kept-alive connection) in the same run. Prints messages per second and client CPU per
// message for both, and the resident memory of outbox while it sends; then `outbox send`, the
// program, end to end with the same bodies (up to 200,000 lines).
//
// Usage: sqs_bench [MESSAGES] [CURL_REQUESTS]   (defaults 1000000 and 2000; needs nginx, curl)
//        SQS_BENCH_ONLY=outbox sqs_bench [MESSAGES]   (the library alone)
//        SQS_BENCH_PROGRAMS=OLD/outbox:NEW/outbox sqs_bench ...   (builds of the program compared)
#include "bench_support.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using outbox::bench::body_of_1kib;
using outbox::bench::canned_batch_reply;
using outbox::bench::ChildRun;
using outbox::bench::cpu_seconds;
using outbox::bench::run_child;

namespace {

constexpr int concurrency = 16;
const std::string access_key = "AKIDOUTBOXBENCH";
const std::string secret_key = "outbox-bench-secret";

struct Figures {
    double messages_per_second = 0;
    double cpu_us_per_message = 0;
    long messages = 0;
    double system_us_per_message = 0;    // the kernel's part of cpu_us_per_message
    outbox::LatencyHistogram latency{};  // accepted to completed, the library's own count
};

Figures run_outbox(std::uint16_t port, long total, const std::string& body) {
    boost::asio::io_context io(1);
    outbox::SqsDestinationConfig config;
    config.queue_url = "http://127.0.0.1:" + std::to_string(port) + "/000000000000/bench";
    config.region = "us-east-1";
    config.credentials =
        outbox::make_static_credentials(io.get_executor(), {access_key, secret_key});
    config.max_message_size = 262144;  // nginx has no GetQueueAttributes
    config.max_concurrent_requests = concurrency;
    config.http.max_connections_per_origin = concurrency;
    outbox::SqsDestination sqs(io.get_executor(), config);

    const long window = 4096;  // sends outstanding at once; the destination batches them
    long started = 0, done = 0, failed = 0;
    long peak_kib = 0;
    std::function<void()> launch = [&] {
        ++started;
        outbox::Message m;
        m.body = body;
        sqs.async_send(std::move(m), [&](boost::system::error_code ec, outbox::Receipt) {
            ++done;
            if (ec) ++failed;
            if (done % 100000 == 0) {
                const long kib = outbox::bench::resident_kib();
                peak_kib = std::max(peak_kib, kib);
                std::printf("  after %7ld messages: resident %ld KiB\n", done, kib);
            }
            if (started < total) launch();
        });
    };
    // Warm up: connections open, signing key cached.
    for (int i = 0; i < concurrency * 10; ++i) launch();
    while (done < concurrency * 10 && io.run_one()) {
    }
    started = done = 0;
    const long baseline_kib = outbox::bench::resident_kib();
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    const auto t0 = Clock::now();
    for (long i = 0; i < std::min(window, total); ++i) launch();
    while (done < total && io.run_one()) {
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    ::getrusage(RUSAGE_SELF, &after);
    std::printf("  resident before %ld KiB, peak sampled %ld KiB, ru_maxrss %ld KiB\n",
                baseline_kib, peak_kib, after.ru_maxrss);
    if (failed) std::cerr << "outbox: " << failed << " messages failed\n";
    const auto stats = sqs.stats();
    std::printf("  %llu requests, %.2f messages per request\n",
                static_cast<unsigned long long>(stats.requests),
                static_cast<double>(stats.delivered) / static_cast<double>(stats.requests));
    return {static_cast<double>(total) / seconds,
            (cpu_seconds(after) - cpu_seconds(before)) * 1e6 / static_cast<double>(total), total,
            (outbox::bench::system_seconds(after) - outbox::bench::system_seconds(before)) * 1e6 /
                static_cast<double>(total),
            stats.latency};
}

// curl signs each request with --aws-sigv4 and reuses one connection for every URL it is given.
Figures run_curl(std::uint16_t port, long requests, const std::string& body) {
    const fs::path dir =
        fs::temp_directory_path() / ("outbox-bench-curl-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // The same batch outbox sends: ten entries, the body escaped as JSON.
    std::string batch = "{\"QueueUrl\":\"http://127.0.0.1:" + std::to_string(port) +
                        "/000000000000/bench\",\"Entries\":[";
    std::string escaped;
    for (char c : body) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
    }
    for (int i = 0; i < 10; ++i)
        batch += std::string(i ? "," : "") + "{\"Id\":\"" + std::to_string(i) +
                 "\",\"MessageBody\":\"" + escaped + "\"}";
    batch += "]}";
    std::ofstream(dir / "batch.json") << batch;
    {
        std::ofstream config(dir / "curl.conf");
        config << "silent\nshow-error\n";
        for (long i = 0; i < requests; ++i)
            config << "url = \"http://127.0.0.1:" << port << "/\"\noutput = \"/dev/null\"\n";
    }
    const ChildRun curl = run_child("curl", [&] {
        const std::string user = access_key + ":" + secret_key;
        const std::string data = "@" + (dir / "batch.json").string();
        ::execlp("curl", "curl", "-K", (dir / "curl.conf").c_str(), "--aws-sigv4",
                 "aws:amz:us-east-1:sqs", "--user", user.c_str(), "-H",
                 "Content-Type: application/x-amz-json-1.0", "-H",
                 "X-Amz-Target: AmazonSQS.SendMessageBatch", "--data-binary", data.c_str(),
                 static_cast<char*>(nullptr));
    });
    fs::remove_all(dir);
    const long messages = requests * 10;
    return {static_cast<double>(messages) / curl.seconds,
            curl.cpu_seconds * 1e6 / static_cast<double>(messages), messages,
            curl.system_seconds * 1e6 / static_cast<double>(messages)};
}

#ifdef OUTBOX_CLI_PATH
// `outbox send` end to end: reading the lines, sending, counting, its summary; the same
// bodies to the same nginx. Its own process: CPU from RUSAGE_CHILDREN, start-up included.
fs::path write_input(long lines, const std::string& body) {
    const fs::path input =
        fs::temp_directory_path() / ("outbox-bench-send-" + std::to_string(::getpid()) + ".jsonl");
    std::ofstream out(input);
    for (long i = 0; i < lines; ++i) out << body << '\n';
    return input;
}

Figures run_program(std::uint16_t port, const fs::path& input, long lines,
                    const char* program = OUTBOX_CLI_PATH) {
    const std::string queue = "http://127.0.0.1:" + std::to_string(port) + "/000000000000/bench";
    const ChildRun send = run_child("outbox send", [&] {
        ::setenv("AWS_ACCESS_KEY_ID", access_key.c_str(), 1);
        ::setenv("AWS_SECRET_ACCESS_KEY", secret_key.c_str(), 1);
        ::setenv("AWS_REGION", "us-east-1", 1);
        ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        std::freopen("/dev/null", "w", stdout);
        ::execl(program, "outbox", "send", "--to", queue.c_str(), input.c_str(),
                static_cast<char*>(nullptr));
    });
    return {static_cast<double>(lines) / send.seconds,
            send.cpu_seconds * 1e6 / static_cast<double>(lines), lines,
            send.system_seconds * 1e6 / static_cast<double>(lines)};
}
#endif

}  // namespace

int main(int argc, char** argv) {
    const long messages = argc > 1 ? std::atol(argv[1]) : 1000000;
    const long curl_requests = argc > 2 ? std::atol(argv[2]) : 2000;
    const std::string body = body_of_1kib();
    outbox::bench::Nginx nginx("default_type application/x-amz-json-1.0; return 200 '" +
                               canned_batch_reply(body) + "';");
    std::printf(
        "SqsDestination vs curl --aws-sigv4: 10-entry SendMessageBatch of %zu-byte bodies,\n"
        "nginx on 127.0.0.1:%u answering a canned reply; client CPU = user + system time\n\n",
        body.size(), nginx.port());
    std::printf("outbox, %ld messages, %d requests in flight:\n", messages, concurrency);
    const Figures ours = run_outbox(nginx.port(), messages, body);
    // SQS_BENCH_ONLY=outbox stops here: the library alone, for perf record and callgrind.
    if (const char* only = std::getenv("SQS_BENCH_ONLY"); only && std::string(only) == "outbox") {
        std::printf("outbox SqsDestination: %.2f us CPU per message (of it kernel %.2f)\n",
                    ours.cpu_us_per_message, ours.system_us_per_message);
        return 0;
    }
    const Figures curl = run_curl(nginx.port(), curl_requests, body);
#ifdef OUTBOX_CLI_PATH
    const long lines = std::min(messages, 200000L);
    const fs::path input = write_input(lines, body);
    const Figures program = run_program(nginx.port(), input, lines);
    // SQS_BENCH_PROGRAMS=A:B:... sets builds of `outbox` side by side: each sends the same
    // file SQS_BENCH_ROUNDS times (default 7), interleaved; the median CPU per message of each.
    if (const char* list = std::getenv("SQS_BENCH_PROGRAMS")) {
        std::vector<std::string> programs;
        for (std::string_view rest = list; !rest.empty();) {
            const auto colon = rest.find(':');
            if (colon != 0) programs.emplace_back(rest.substr(0, colon));
            rest = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
        }
        const char* rounds_text = std::getenv("SQS_BENCH_ROUNDS");
        const int rounds = rounds_text ? std::max(1, std::atoi(rounds_text)) : 7;
        std::vector<std::vector<double>> cpu(programs.size());
        for (int r = 0; r < rounds; ++r)
            for (std::size_t i = 0; i < programs.size(); ++i)
                cpu[i].push_back(run_program(nginx.port(), input, lines, programs[i].c_str())
                                     .cpu_us_per_message);
        std::printf("\n`outbox send` builds side by side, %d rounds interleaved, %ld lines:\n",
                    rounds, lines);
        for (std::size_t i = 0; i < programs.size(); ++i) {
            std::sort(cpu[i].begin(), cpu[i].end());
            std::printf("  %-40s median %6.2f us CPU/message (min %.2f, max %.2f)\n",
                        programs[i].c_str(), cpu[i][cpu[i].size() / 2], cpu[i].front(),
                        cpu[i].back());
        }
    }
    fs::remove(input);
#endif
    // The kernel's part (system time) beside the whole; loopback TCP charges some of the
    // receiving side's work to the sender.
    std::printf("\n%-34s %12s %16s %12s %10s\n", "client", "messages/s", "CPU us/message",
                "of it kernel", "messages");
    const auto row = [](const char* name, const Figures& f) {
        std::printf("%-34s %12.0f %16.2f %12.2f %10ld\n", name, f.messages_per_second,
                    f.cpu_us_per_message, f.system_us_per_message, f.messages);
    };
    row("outbox SqsDestination", ours);
#ifdef OUTBOX_CLI_PATH
    row("outbox send FILE (the program)", program);
#endif
    row("curl --aws-sigv4 (1 connection)", curl);
    std::printf("\nratio (curl / outbox CPU per message): %.1fx\n",
                curl.cpu_us_per_message / ours.cpu_us_per_message);
#ifdef OUTBOX_CLI_PATH
    std::printf("the program over the library: %.2fx; the program against curl: %.2fx\n",
                program.cpu_us_per_message / ours.cpu_us_per_message,
                program.cpu_us_per_message / curl.cpu_us_per_message);
#endif
    const char* unit = "us CPU/message";
    outbox::bench::print_figure("sqs_bench", "SqsDestination / curl --aws-sigv4",
                                ours.cpu_us_per_message, curl.cpu_us_per_message, unit, 0);
    outbox::bench::print_figure("sqs_bench", "SqsDestination user-space / curl user-space",
                                ours.cpu_us_per_message - ours.system_us_per_message,
                                curl.cpu_us_per_message - curl.system_us_per_message, unit, 0);
#ifdef OUTBOX_CLI_PATH
    outbox::bench::print_figure("sqs_bench", "outbox send / curl --aws-sigv4",
                                program.cpu_us_per_message, curl.cpu_us_per_message, unit, 0.25);
    outbox::bench::print_figure("sqs_bench", "outbox send / SqsDestination",
                                program.cpu_us_per_message, ours.cpu_us_per_message, unit, 1.10);
#endif
    auto ms = [&](double q) { return double(ours.latency.percentile(q).count()) / 1000.0; };
    outbox::bench::print_latency("sqs_bench", "SqsDestination, 4096 sends open", ms(0.5), ms(0.9),
                                 ms(0.99), ms(0.999));
    return 0;
}
