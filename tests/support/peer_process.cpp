#include "peer_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstring>
#include <stdexcept>

#include <chrono>
#include <thread>

namespace outbox::test {
namespace {

pid_t spawn(const std::vector<std::string>& argv, int& stdout_fd, int* stdin_fd) {
    int out[2], in[2] = {-1, -1};
    // Close-on-exec: other children must not inherit (and hold open) these pipes.
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    if (stdin_fd != nullptr && pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        if (stdin_fd != nullptr) {
            dup2(in[0], STDIN_FILENO);
            close(in[0]);
            close(in[1]);
        } else {
            const int devnull = open("/dev/null", O_RDONLY);
            dup2(devnull, STDIN_FILENO);
        }
        setpgid(0, 0);  // its own group: stopping it stops its children too
        // A test killed before its destructors run must not leave its peers behind.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        _exit(127);
    }
    close(out[1]);
    stdout_fd = out[0];
    if (stdin_fd != nullptr) {
        close(in[0]);
        *stdin_fd = in[1];
    }
    return pid;
}

}  // namespace

std::string source_dir() {
    return OUTBOX_SOURCE_DIR;
}

PeerProcess::PeerProcess(std::vector<std::string> argv, bool takes_commands) {
    int fd = -1;
    pid_ = spawn(argv, fd, takes_commands ? &commands_in_ : nullptr);
    std::string line;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[256];
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<std::size_t>(n));
    }
    if (takes_commands) {
        answers_out_ = fd;
    } else {
        close(fd);  // later output goes nowhere (the peers print nothing else to stdout)
    }
    const auto at = line.find("\"port\":");
    if (at == std::string::npos) {
        this->~PeerProcess();
        throw std::runtime_error("peer " + argv[0] + " " + (argv.size() > 1 ? argv[1] : "") +
                                 " did not start: " + line);
    }
    const auto end = line.find('\n');
    ready_line_ = line.substr(0, end);
    if (end != std::string::npos) pending_ = line.substr(end + 1);
    port_ = static_cast<unsigned short>(std::stoi(line.substr(at + 7)));
}

std::string PeerProcess::command(const std::string& line) {
    if (commands_in_ < 0) throw std::logic_error("this peer takes no commands");
    const std::string out = line + "\n";
    if (write(commands_in_, out.data(), out.size()) != static_cast<ssize_t>(out.size()))
        throw std::runtime_error("the peer stopped reading commands");
    while (pending_.find('\n') == std::string::npos) {
        char buf[256];
        const ssize_t n = read(answers_out_, buf, sizeof buf);
        if (n <= 0) throw std::runtime_error("the peer stopped answering commands");
        pending_.append(buf, static_cast<std::size_t>(n));
    }
    const auto end = pending_.find('\n');
    std::string answer = pending_.substr(0, end);
    pending_.erase(0, end + 1);
    return answer;
}

PeerProcess::~PeerProcess() {
    if (commands_in_ >= 0) close(commands_in_);
    if (answers_out_ >= 0) close(answers_out_);
    commands_in_ = answers_out_ = -1;
    if (pid_ <= 0) return;
    kill(-pid_, SIGTERM);
    kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(
            std::chrono::milliseconds(10));  // waiting for exit, not for work
    }
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

int run_command(const std::vector<std::string>& argv, std::string& out,
                const std::string& stdin_text) {
    int fd = -1, in = -1;
    const pid_t pid = spawn(argv, fd, &in);
    if (!stdin_text.empty()) {
        std::size_t off = 0;
        while (off < stdin_text.size()) {
            const ssize_t n = write(in, stdin_text.data() + off, stdin_text.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
    }
    close(in);
    out.clear();
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

unsigned short free_port() {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t length = sizeof addr;
    getsockname(s, reinterpret_cast<sockaddr*>(&addr), &length);
    close(s);
    return ntohs(addr.sin_port);
}

std::string http_get(unsigned short port, const std::string& path) {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(s);
        throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
    }
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    (void)!write(s, req.data(), req.size());
    std::string res;
    char buf[4096];
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) res.append(buf, static_cast<std::size_t>(n));
    close(s);
    const auto body = res.find("\r\n\r\n");
    return body == std::string::npos ? std::string() : res.substr(body + 4);
}

}  // namespace outbox::test
