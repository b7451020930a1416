// What the side-by-side benchmarks share: a local nginx answering a fixed reply, and the CPU
// time of a process.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace outbox::bench {

/// User plus system time.
double cpu_seconds(const rusage& r);

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

/// Resident set size of this process now, in KiB (from /proc/self/statm).
long resident_kib();

/// A JSON event of exactly 1 KiB, the body every side-by-side benchmark sends.
std::string body_of_1kib();

/// SQS's reply to a SendMessageBatch of ten messages with `body` (MD5s that check out).
std::string canned_batch_reply(const std::string& body);

/// SQS's reply to a SendMessage of `body`.
std::string canned_single_reply(const std::string& body);

}  // namespace outbox::bench
