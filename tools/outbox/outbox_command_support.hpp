// What the durable outbox's commands share (outbox_commands.cpp, relay_command.cpp): opening a
// store, and the signals that stop a run. Defined in outbox_commands.cpp.
#pragma once

#include <outbox/outbox_store.hpp>
#include <outbox/sqlite_store.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <string>

namespace outbox::cli {

// `create`: enqueue and relay make a new SQLite file; the commands that only look at one do
// not (a mistyped path is an error, not an empty store left behind). A PostgreSQL database
// always gets its schema: the application's transactions need outbox.enqueue.
inline bool is_postgresql(const std::string& location) {
    return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

OutboxStorePtr open_store(const std::string& path, std::string& error, bool create = true,
                          std::chrono::seconds claim_lease = std::chrono::seconds(300),
                          IntegrityCheck check = IntegrityCheck::after_unclean_stop);

// Signals stop the reading (through a wake pipe) and are remembered for the exit status.
class StopSignals {
  public:
    explicit StopSignals(boost::asio::io_context& io);
    ~StopSignals();
    int wake_fd() const { return wake_[0]; }
    int signal() const { return signal_.load(); }
    void on_signal(std::function<void(int)> f) { on_signal_ = std::move(f); }
    void cancel() { signals_.cancel(); }

  private:
    void arm();
    boost::asio::signal_set signals_;
    int wake_[2] = {-1, -1};
    std::atomic<int> signal_{0};
    std::function<void(int)> on_signal_;
};

inline const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace outbox::cli
