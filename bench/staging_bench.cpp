// What staging a payload costs. Offline: the work the stager does per payload without the
// network (SHA-256 of the body, PutObject header signature, pre-signed GET, the envelope) for
// 1 KiB and 1 MiB bodies. End to end: staged payloads per second through PayloadStager
// against s3rver (a local S3 on Node.js, which bounds the figure) on 127.0.0.1.
//
// Usage: staging_bench [OFFLINE_ITERATIONS] [END_TO_END_PAYLOADS]   (needs node + tests/peers)
#include "bench_support.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/envelope.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sigv4.hpp>

#include <boost/asio/io_context.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using outbox::bench::cpu_seconds;

namespace {

const outbox::Credentials credentials{"S3RVER", "S3RVER"};

// The stager's per-payload work, through the same public pieces it uses.
double offline_us(const std::string& body, long iterations) {
    const outbox::sigv4::Signer signer({.region = "eu-west-1",
                                        .service = "s3",
                                        .path_rule = outbox::sigv4::PathRule::s3,
                                        .send_content_sha256 = true});
    const std::string host = "outbox-staging.s3.eu-west-1.amazonaws.com";
    const std::string path = "/payloads/2026/11/22/0fac39f4-a984-4fb3-a706-6f1aad7e5073";
    const outbox::sigv4::Header headers[] = {{"Content-Type", "application/json"},
                                             {"x-amz-server-side-encryption", "AES256"},
                                             {"x-amz-tagging", "outbox=staged"}};
    outbox::sigv4::HeaderSignature sig;
    outbox::sigv4::PresignedQuery query;
    std::size_t sink = 0;
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    for (long i = 0; i < iterations; ++i) {
        const auto now = std::chrono::system_clock::now();
        const auto hash = outbox::sigv4::payload_hash(body);
        (void)signer.sign_headers({.method = "PUT",
                                   .host = host,
                                   .path = path,
                                   .headers = headers,
                                   .payload_hash = hash.view()},
                                  credentials, now, sig);
        (void)signer.presign({.method = "GET", .host = host, .path = path}, credentials, now,
                             std::chrono::seconds(600), query);
        const std::string url = "https://" + host + path + "?" + query.query;
        sink += outbox::staged_payload_message(url, std::chrono::seconds(600)).size();
    }
    ::getrusage(RUSAGE_SELF, &after);
    if (sink == 0) std::puts("");
    return (cpu_seconds(after) - cpu_seconds(before)) * 1e6 / static_cast<double>(iterations);
}

struct S3rver {
    pid_t pid = -1;
    int port = 0;
    fs::path dir =
        fs::temp_directory_path() / ("outbox-bench-s3rver-" + std::to_string(::getpid()));
    explicit S3rver(const std::string& peers) {
        int out[2];
        if (::pipe(out) != 0) std::exit(1);
        pid = ::fork();
        if (pid == 0) {
            ::dup2(out[1], STDOUT_FILENO);
            ::close(out[0]);
            ::execlp("node", "node", "--no-warnings", (peers + "/s3rver_peer.mjs").c_str(), "0",
                     dir.c_str(), "bench-staging", static_cast<char*>(nullptr));
            std::_Exit(127);
        }
        ::close(out[1]);
        char buf[128] = {};
        const auto n = ::read(out[0], buf, sizeof buf - 1);
        ::close(out[0]);
        const std::string line(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        const auto at = line.find("\"port\":");
        if (at == std::string::npos) {
            std::fprintf(stderr, "s3rver did not start: %s\n", line.c_str());
            std::exit(1);
        }
        port = std::atoi(line.c_str() + at + 7);
    }
    ~S3rver() {
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
        fs::remove_all(dir);
    }
};

void end_to_end(const std::string& peers, long payloads, std::size_t size) {
    S3rver server(peers);
    boost::asio::io_context io(1);
    outbox::PayloadStager stager(
        io.get_executor(),
        {.bucket = "bench-staging",
         .region = "us-east-1",
         .endpoint = "http://127.0.0.1:" + std::to_string(server.port),
         .credentials = outbox::make_static_credentials(io.get_executor(), credentials)});
    const std::string body(size, 'p');
    long started = 0, done = 0, failed = 0;
    std::function<void()> launch = [&] {
        ++started;
        stager.async_stage(body, [&](boost::system::error_code ec, outbox::StagedPayload) {
            ++done;
            if (ec) ++failed;
            if (started < payloads) launch();
        });
    };
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    const auto t0 = Clock::now();
    for (int i = 0; i < 16 && started < payloads; ++i) launch();
    while (done < payloads && io.run_one()) {
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    ::getrusage(RUSAGE_SELF, &after);
    std::printf(
        "  %7zu-byte payloads: %8.0f staged/s, client CPU %7.1f us per payload (%ld payloads, %ld "
        "failed)\n",
        size, static_cast<double>(payloads) / seconds,
        (cpu_seconds(after) - cpu_seconds(before)) * 1e6 / static_cast<double>(payloads), payloads,
        failed);
    stager.close();
}

}  // namespace

int main(int argc, char** argv) {
    const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
    const long payloads = argc > 2 ? std::atol(argv[2]) : 2000;
    std::printf(
        "Staging without the network (SHA-256 of the body, PutObject signature, pre-signed GET,\n"
        "staged-payload message), CPU per payload:\n");
    std::printf("  1 KiB: %.2f us\n", offline_us(std::string(1024, 'x'), iterations));
    std::printf("  1 MiB: %.1f us\n",
                offline_us(std::string(1024 * 1024, 'x'), std::max(1L, iterations / 100)));
    std::printf("\nEnd to end through PayloadStager against s3rver on 127.0.0.1 (16 in flight):\n");
    const std::string peers = OUTBOX_PEERS_DIR;
    end_to_end(peers, payloads, 1024);
    end_to_end(peers, std::max(1L, payloads / 10), 1024 * 1024);
    return 0;
}
