#include "bench_support.hpp"

#include "aws/sqs/sqs_protocol.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace fs = std::filesystem;

namespace outbox::bench {
namespace {

std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

bool accepts(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

double cpu_seconds(const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double system_seconds(const rusage& r) {
    return static_cast<double>(r.ru_stime.tv_sec) + static_cast<double>(r.ru_stime.tv_usec) / 1e6;
}

namespace {
int next_nginx = 0;  // several in one process each get their own directory
}  // namespace

Nginx::Nginx(const std::string& directive)
    : dir_(fs::temp_directory_path() / ("outbox-bench-nginx-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(next_nginx++))),
      port_(free_port()) {
    fs::create_directories(dir_ / "logs");
    std::ofstream(dir_ / "nginx.conf")
        << "daemon off; master_process off; worker_processes 1;\n"
        << "error_log " << (dir_ / "logs/error.log").string() << " warn; pid "
        << (dir_ / "nginx.pid").string()
        << ";\nworker_rlimit_nofile 16384;\nevents { worker_connections 8192; }\n"
        << "http { access_log off; keepalive_requests 10000000; keepalive_timeout 60s;\n"
        << "  client_max_body_size 4m; client_body_buffer_size 4m;\n"
        << "  client_body_temp_path " << dir_.string() << "; proxy_temp_path " << dir_.string()
        << ";\n"
        << "  fastcgi_temp_path " << dir_.string() << "; uwsgi_temp_path " << dir_.string()
        << "; scgi_temp_path " << dir_.string() << ";\n"
        << "  server { listen 127.0.0.1:" << port_ << "; location / { " << directive << " } } }\n";
    pid_ = ::fork();
    if (pid_ == 0) {
        ::execlp("nginx", "nginx", "-p", dir_.c_str(), "-c", (dir_ / "nginx.conf").c_str(), "-e",
                 (dir_ / "logs/error.log").c_str(), static_cast<char*>(nullptr));
        std::_Exit(127);
    }
    // Wait for the listening socket, bounded.
    for (int i = 0; i < 500 && !accepts(port_); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!accepts(port_))
        throw std::runtime_error("nginx did not start; see " + (dir_ / "logs/error.log").string());
}

Nginx::~Nginx() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    fs::remove_all(dir_);
}

long resident_kib() {
    long pages = 0, resident = 0;
    std::ifstream("/proc/self/statm") >> pages >> resident;
    return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

std::string body_of_1kib() {
    std::string body = "{\"event\":\"order.created\",\"payload\":\"";
    while (body.size() < 1024 - 2) body += static_cast<char>('a' + body.size() % 26);
    return body + "\"}";
}

std::string canned_batch_reply(const std::string& body) {
    const auto md5 = outbox::detail::sqs::md5_of_body(body);
    std::string reply = "{\"Successful\":[";
    for (int i = 0; i < 10; ++i) {
        if (i) reply += ',';
        reply += "{\"Id\":\"" + std::to_string(i) +
                 "\",\"MessageId\":\"5fea7756-0ea4-451a-a703-a558b933e27" + std::to_string(i) +
                 "\",\"MD5OfMessageBody\":\"" + std::string(md5.data(), md5.size()) + "\"}";
    }
    return reply + "],\"Failed\":[]}";
}

std::string canned_single_reply(const std::string& body) {
    const auto md5 = outbox::detail::sqs::md5_of_body(body);
    return "{\"MessageId\":\"m-1\",\"MD5OfMessageBody\":\"" + std::string(md5.data(), md5.size()) +
           "\"}";
}

void print_figure(std::string_view bench, std::string_view comparison, double ours,
                  double reference, std::string_view unit, double target_ratio) {
    std::printf("figure\t%.*s\t%.*s\t%.4g\t%.4g\t%.*s\t%.3g\n", int(bench.size()), bench.data(),
                int(comparison.size()), comparison.data(), ours, reference, int(unit.size()),
                unit.data(), target_ratio);
    std::fflush(stdout);
}

void print_latency(std::string_view bench, std::string_view what, double p50_ms, double p90_ms,
                   double p99_ms, double p999_ms) {
    std::printf("latency\t%.*s\t%.*s\t%.4g\t%.4g\t%.4g\t%.4g\n", int(bench.size()), bench.data(),
                int(what.size()), what.data(), p50_ms, p90_ms, p99_ms, p999_ms);
    std::fflush(stdout);
}

}  // namespace outbox::bench
