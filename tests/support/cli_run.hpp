// Runs the real `outbox send` program with a report file, for the CLI tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace outbox::test {

struct CliRun {
    int status;
    std::string err;
    std::vector<std::string> report;  // its lines
};

/// `env ENV outbox send ARGS --report R IN 2>ERR`, with `input` as the IN file, killed after
/// five minutes.
inline CliRun run_outbox_send(const std::string& cli, const std::string& args,
                              const std::string& input, const std::string& env) {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("outbox-send-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "in.jsonl") << input;
    // A program that hangs fails its test (status 124) instead of holding up the whole run.
    const std::string cmd = "timeout -k 5 300 env " + env + " '" + cli + "' send " + args +
                            " --report '" + (dir / "report.jsonl").string() + "' '" +
                            (dir / "in.jsonl").string() + "' 2>'" + (dir / "err").string() + "'";
    const int raw = std::system(cmd.c_str());
    CliRun r{WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, {}, {}};
    std::ifstream err(dir / "err");
    r.err.assign(std::istreambuf_iterator<char>(err), {});
    std::ifstream report(dir / "report.jsonl");
    for (std::string line; std::getline(report, line);) r.report.push_back(line);
    fs::remove_all(dir);
    return r;
}

}  // namespace outbox::test
