#include "program_run.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace outbox::test {

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

ProgramRun run_program(const std::vector<std::string>& argv, const ProgramOptions& options) {
    const TempDir dir;
    const std::string out_path =
        options.output_file.empty() ? dir.file("stdout") : options.output_file;
    const std::string err_path = dir.file("stderr");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // The environment is built here: after fork, a threaded parent's child may only make
    // async-signal-safe calls (no setenv, no malloc).
    std::vector<std::string> env_storage;
    auto overridden = [&](std::string_view entry) {
        const std::string_view name = entry.substr(0, entry.find('='));
        for (const auto& u : options.unset_env)
            if (name == u) return true;
        for (const auto& e : options.set_env)
            if (name == std::string_view(e).substr(0, e.find('='))) return true;
        return false;
    };
    for (char** e = environ; *e != nullptr; ++e)
        if (!overridden(*e)) env_storage.emplace_back(*e);
    for (const auto& e : options.set_env) env_storage.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string in_path = options.input == ProgramOptions::Input::file
                                    ? options.input_file
                                    : std::string("/dev/null");

    // Standard output into a pipe nobody reads (its read end is closed before the start).
    int broken_pipe_write_end = -1;
    if (options.output == ProgramOptions::Output::broken_pipe) {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
        ::close(fds[0]);
        broken_pipe_write_end = fds[1];
    }
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (broken_pipe_write_end >= 0 && pid > 0) ::close(broken_pipe_write_end);
    if (pid == 0) {
        if (options.input == ProgramOptions::Input::closed) {
            ::close(STDIN_FILENO);
        } else {
            const int fd = ::open(in_path.c_str(), O_RDONLY);
            if (fd < 0) ::_exit(126);
            ::dup2(fd, STDIN_FILENO);
            ::close(fd);
        }
        int out = -1;
        if (options.output == ProgramOptions::Output::broken_pipe) {
            out = broken_pipe_write_end;
        } else {
            out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        }
        if (out < 0) ::_exit(126);
        const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(out, STDOUT_FILENO);
        ::dup2(err, STDERR_FILENO);
        ::close(out);
        ::close(err);
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }

    // A watchdog kills a child that outlives kill_after; it stands down once it is reaped.
    std::mutex mutex;
    std::condition_variable reaped_cv;
    bool reaped = false;
    std::atomic<bool> killed{false};
    std::thread watchdog([&] {
        std::unique_lock lock(mutex);
        if (!reaped_cv.wait_for(lock, options.kill_after, [&] { return reaped; })) {
            killed = true;
            ::kill(pid, SIGKILL);
        }
    });
    int raw = 0;
    rusage usage{};
    const auto reap = [&] {
        while (::wait4(pid, &raw, 0, &usage) < 0 && errno == EINTR) {
        }
        {
            std::lock_guard lock(mutex);
            reaped = true;
        }
        reaped_cv.notify_all();
        watchdog.join();
    };
    if (options.while_running) {
        try {
            options.while_running(pid);
        } catch (...) {  // a failed REQUIRE: end the child and the watchdog, then report it
            ::kill(pid, SIGKILL);
            reap();
            throw;
        }
    }
    reap();

    ProgramRun run;
    run.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (WIFEXITED(raw)) run.status = WEXITSTATUS(raw);
    if (WIFSIGNALED(raw)) run.signal = WTERMSIG(raw);
    run.killed = killed;
    run.max_rss_kib = usage.ru_maxrss;
    if (options.output_file.empty() && options.output == ProgramOptions::Output::captured)
        run.out = slurp(out_path);
    run.err = slurp(err_path);
    return run;
}

std::vector<std::string> read_lines(const std::string& path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

TempDir::TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "outbox-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

std::string how_it_ended(const ProgramRun& run) {
    std::string how = run.signal != 0 ? "signal " + std::to_string(run.signal)
                                      : "exit status " + std::to_string(run.status);
    if (run.killed) how += " (killed: still running at kill_after)";
    return how + " after " + std::to_string(run.elapsed.count()) + " ms";
}

}  // namespace outbox::test
