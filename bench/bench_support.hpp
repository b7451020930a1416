// What the side-by-side benchmarks share: a local nginx answering a fixed reply, and the CPU
// time of a process.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace outbox::bench {

/// User plus system time.
double cpu_seconds(const rusage& r);
/// System time alone: the kernel's part of cpu_seconds (sockets, loopback TCP, wake-ups).
double system_seconds(const rusage& r);

/// nginx, one worker, on 127.0.0.1 only, every location answering with `directive` (for
/// example `return 200 "ok\n";`); stopped by its PID when this object goes.
class Nginx {
  public:
    explicit Nginx(const std::string& directive);
    ~Nginx();
    Nginx(const Nginx&) = delete;
    Nginx& operator=(const Nginx&) = delete;
    std::uint16_t port() const { return port_; }

  private:
    std::filesystem::path dir_;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

/// A child process's wall and CPU time (user + system, from RUSAGE_CHILDREN). `ok` is false
/// when it failed, which it says on stderr.
struct ChildRun {
    double seconds = 0, cpu_seconds = 0, system_seconds = 0;
    bool ok = false;
};

/// Runs `exec` in a child process and waits for it; `exec` must not return (an exec call).
template <class Exec>
ChildRun run_child(const char* what, Exec exec) {
    rusage before{}, after{};
    ::getrusage(RUSAGE_CHILDREN, &before);
    const auto t0 = std::chrono::steady_clock::now();
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t pid = ::fork();
    if (pid == 0) {
        exec();
        std::_Exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::getrusage(RUSAGE_CHILDREN, &after);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) std::fprintf(stderr, "%s failed: status %d\n", what, status);
    return {seconds, cpu_seconds(after) - cpu_seconds(before),
            system_seconds(after) - system_seconds(before), ok};
}

/// Resident set size of this process now, in KiB (from /proc/self/statm).
long resident_kib();

/// A JSON event of exactly 1 KiB, the body every side-by-side benchmark sends.
std::string body_of_1kib();

/// SQS's reply to a SendMessageBatch of ten messages with `body` (MD5s that check out).
std::string canned_batch_reply(const std::string& body);

/// SQS's reply to a SendMessage of `body`.
std::string canned_single_reply(const std::string& body);

// Lines for bench/plot_bench.py, which draws docs/performance-*.svg from them; people read
// the tables printed beside. Tab-separated, one per comparison or latency series.

/// "figure  BENCH  COMPARISON  OURS  REFERENCE  UNIT  TARGET": ours against its reference in
/// the same run (lower is better), and the ratio the project aims for (0: none set).
void print_figure(std::string_view bench, std::string_view comparison, double ours,
                  double reference, std::string_view unit, double target_ratio);

/// "latency  BENCH  WHAT  P50  P90  P99  P99.9", in milliseconds (a negative value: not
/// measured).
void print_latency(std::string_view bench, std::string_view what, double p50_ms, double p90_ms,
                   double p99_ms, double p999_ms);

}  // namespace outbox::bench
