// Local test peers as child processes: started with a command line, ready when they print
// their {"port": N} line, stopped by their PID when the object goes away.
#pragma once

#include <sys/types.h>
#include <string>
#include <vector>

namespace outbox::test {

/// The repository's root, for tests/peers/... paths.
std::string source_dir();

class PeerProcess {
  public:
    /// Starts `argv` and waits (up to 30 s) for its first stdout line, {"port": N}.
    /// Throws std::runtime_error when it does not start. With `takes_commands`, its
    /// standard input and output stay connected for command().
    explicit PeerProcess(std::vector<std::string> argv, bool takes_commands = false);
    ~PeerProcess();  // SIGTERM, then SIGKILL after 5 s; always reaped
    PeerProcess(const PeerProcess&) = delete;
    PeerProcess& operator=(const PeerProcess&) = delete;

    unsigned short port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    /// The line it printed when ready.
    const std::string& ready_line() const { return ready_line_; }
    /// Writes one command line and returns the one line it answers (takes_commands only).
    std::string command(const std::string& line);

  private:
    pid_t pid_ = -1;
    unsigned short port_ = 0;
    std::string ready_line_;
    int commands_in_ = -1, answers_out_ = -1;
    std::string pending_;  // read past the last answer
};

/// Runs a command to completion; returns its exit status and fills `out` with its stdout.
int run_command(const std::vector<std::string>& argv, std::string& out,
                const std::string& stdin_text = {});

/// A port on 127.0.0.1 that was free a moment ago, for servers that cannot report the one
/// they chose (another process may take it meanwhile).
unsigned short free_port();

/// GETs http://127.0.0.1:PORT/PATH with a plain blocking socket (for the proxy's counters).
std::string http_get(unsigned short port, const std::string& path);

}  // namespace outbox::test
