#include "postgres_server.hpp"

#include "peer_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

namespace outbox::test {
namespace {

std::string postgres_bindir() {
    glob_t g{};
    std::string found;
    if (::glob("/usr/lib/postgresql/*/bin/initdb", 0, nullptr, &g) == 0 && g.gl_pathc > 0)
        found = std::filesystem::path(g.gl_pathv[g.gl_pathc - 1]).parent_path().string();
    ::globfree(&g);
    if (found.empty())
        throw std::runtime_error(
            "no PostgreSQL server (/usr/lib/postgresql/*/bin): run scripts/dev deps");
    return found;
}

// As root: the postgres user's ids; otherwise nothing changes.
struct RunAs {
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    bool change = false;
};
RunAs run_as() {
    RunAs r;
    if (::geteuid() != 0) return r;
    const passwd* pw = ::getpwnam("postgres");
    if (!pw) throw std::runtime_error("running as root and there is no postgres user");
    r.uid = pw->pw_uid;
    r.gid = pw->pw_gid;
    r.change = true;
    return r;
}

pid_t spawn_as(const RunAs& who, const std::vector<std::string>& argv, const std::string& log) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out >= 0) {
            ::dup2(out, STDOUT_FILENO);
            ::dup2(out, STDERR_FILENO);
        }
        const int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, STDIN_FILENO);
        if (who.change && (::setgid(who.gid) != 0 || ::setuid(who.uid) != 0)) _exit(126);
        // After setuid, which clears it: a test killed early takes its server along.
        ::prctl(PR_SET_PDEATHSIG, SIGINT);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        _exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

PostgresServer::PostgresServer(bool durable) : bin_(postgres_bindir()), durable_(durable) {
    char tmpl[] = "/tmp/outbox-postgres-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    const RunAs who = run_as();
    if (who.change && ::chown(dir_.c_str(), who.uid, who.gid) != 0)
        throw std::runtime_error("cannot give " + dir_ + " to the postgres user");
    const std::string log = dir_ + "/initdb.log";
    const pid_t init = spawn_as(who,
                                {bin_ + "/initdb", "-D", dir_ + "/data", "-U", "outbox", "-A",
                                 "trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                                log);
    if (wait_exit(init) != 0) throw std::runtime_error("initdb failed: see " + log);
    port_ = free_port();
    start();
    std::string out;
    if (run_command({bin_ + "/createdb", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
                     "outbox", "outbox"},
                    out) != 0)
        throw std::runtime_error("createdb failed");
}

PostgresServer::~PostgresServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string PostgresServer::uri() const {
    return "postgresql://outbox@127.0.0.1:" + std::to_string(port_) + "/outbox";
}

void PostgresServer::start() {
    std::vector<std::string> argv = {bin_ + "/postgres",
                                     "-D",
                                     dir_ + "/data",
                                     "-p",
                                     std::to_string(port_),
                                     "-c",
                                     "listen_addresses=127.0.0.1",
                                     "-c",
                                     "unix_socket_directories=" + dir_,
                                     "-c",
                                     "max_connections=200"};
    if (!durable_) {
        for (const char* setting :
             {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}) {
            argv.push_back("-c");
            argv.push_back(setting);
        }
    }
    pid_ = spawn_as(run_as(), argv, dir_ + "/server.log");
    // Ready when it accepts a connection (pg_isready), or failed when it exits.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
        std::string out;
        if (run_command(
                {bin_ + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", std::to_string(port_)},
                out) == 0)
            return;
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("the PostgreSQL server exited: see " + dir_ + "/server.log");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling readiness
    }
    throw std::runtime_error("the PostgreSQL server did not start in 60 s");
}

void PostgresServer::stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);  // fast shutdown: clients are disconnected
    for (int i = 0; i < 3000; ++i) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // waiting for exit
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

void PostgresServer::restart() {
    stop();
    start();
}

std::string PostgresServer::psql(const std::string& sql, const std::string& database) const {
    std::string out;
    const int rc = run_command(
        {bin_ + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
         "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", "outbox", "-d", database, "-c", sql},
        out);
    if (rc != 0) throw std::runtime_error("psql failed (" + std::to_string(rc) + "): " + sql);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

PostgresServer& postgres() {
    static PostgresServer server;
    return server;
}

}  // namespace outbox::test
