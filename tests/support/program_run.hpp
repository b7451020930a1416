// Runs a program (the real `outbox`) as a child process the way a shell would, and reports
// what a test needs to judge it: exit status or signal, standard error and output, wall time
// and peak memory. Standard input can be a file, /dev/null, or closed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace outbox::test {

struct ProgramOptions {
    std::vector<std::string> set_env{};    // "NAME=value", on top of this process's environment
    std::vector<std::string> unset_env{};  // names to remove
    enum class Input { file, null_device, closed } input = Input::null_device;
    std::string input_file{};
    /// Where standard output goes (captured into ProgramRun::out when empty).
    std::string output_file{};
    /// broken_pipe: standard output is a pipe whose reader has gone (writes fail with EPIPE).
    enum class Output { captured, broken_pipe } output = Output::captured;
    /// Runs in this process once the child started (e.g. waits for a server to see requests,
    /// then signals the child). The child is still running when it is called.
    std::function<void(pid_t)> while_running{};
    /// A child still running after this long is killed (SIGKILL) and the run reports it.
    std::chrono::seconds kill_after{120};
};

struct ProgramRun {
    int status = -1;       // the exit status, or -1 when a signal ended it
    int signal = 0;        // the signal that ended it
    bool killed = false;   // still running at kill_after
    std::string out, err;  // what it wrote
    std::chrono::milliseconds elapsed{0};
    long max_rss_kib = 0;  // peak resident memory
};

ProgramRun run_program(const std::vector<std::string>& argv, const ProgramOptions& options = {});

/// How a run ended, for a failed check's message: "exit status 0 after 1200 ms", "signal 9
/// (killed: still running at kill_after) after 90000 ms".
std::string how_it_ended(const ProgramRun& run);

/// The lines of a file (none when it does not exist).
std::vector<std::string> read_lines(const std::string& path);

/// A fresh empty directory under the system's temporary directory, removed with the object.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const noexcept { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

}  // namespace outbox::test
