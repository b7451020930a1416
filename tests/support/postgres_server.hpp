// A PostgreSQL server of its own for a test: initdb in a new directory under /tmp, the server
// on 127.0.0.1 and a free port, stopped by its PID. initdb refuses to run as root, so as root
// both run as the `postgres` user (Debian's package makes it).
#pragma once

#include <sys/types.h>
#include <string>

namespace outbox::test {

class PostgresServer {
  public:
    /// `durable` false: fsync off (tests that kill clients, not the server).
    explicit PostgresServer(bool durable = false);
    ~PostgresServer();  // stops the server (SIGINT: fast shutdown), removes the directory
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    /// postgresql://outbox@127.0.0.1:PORT/outbox
    std::string uri() const;
    unsigned short port() const { return port_; }
    pid_t pid() const { return pid_; }

    /// Stops the server and starts it again on the same port and data: clients lose their
    /// connections.
    void restart();

    /// Runs SQL with psql in `database`; returns its output (unaligned, tuples only). Throws
    /// on failure.
    std::string psql(const std::string& sql, const std::string& database = "outbox") const;

  private:
    void start();
    void stop();
    std::string dir_;
    std::string bin_;
    bool durable_;
    unsigned short port_ = 0;
    pid_t pid_ = -1;
};

/// One server per test program, started on first use.
PostgresServer& postgres();

}  // namespace outbox::test
