// Reading JSON Lines input for `outbox send`: large reads instead of a character at a time,
// read errors reported as errors (never as the end of input), and a wake-up descriptor so a
// signal can stop a read that would otherwise wait forever.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::cli {

class LineReader {
  public:
    enum class Next { line, end, error, stopped, must_read };

    LineReader() = default;
    ~LineReader();
    LineReader(const LineReader&) = delete;
    LineReader& operator=(const LineReader&) = delete;

    /// Opens FILE, or standard input for "-". False with `why` for a missing, unreadable or
    /// directory input, or a standard input that was closed when the program started.
    bool open(const std::string& source, std::string& why);

    /// When `fd` becomes readable, next() returns Next::stopped instead of waiting for input.
    void stop_on(int fd) { wake_fd_ = fd; }

    /// The next line, without its '\n' (and a '\r' before it); valid until the next call.
    /// Next::error leaves the reason in error().
    Next next(std::string_view& line);

    /// Like next(), without reading: Next::must_read when no whole line is buffered, so the
    /// caller can hand on what it holds before a read that may wait for input.
    Next next_buffered(std::string_view& line);

    const std::string& error() const noexcept { return error_; }
    /// The file descriptor being read, for comparing it with the report's.
    int fd() const noexcept { return fd_; }

    /// Lines longer than this are an input error (a message that large needs another path).
    static constexpr std::size_t max_line_bytes = 256 * 1024 * 1024;

  private:
    Next fill();  // reads more into the buffer

    int fd_ = -1;
    bool owned_ = false;
    int wake_fd_ = -1;
    std::vector<char> buffer_ = std::vector<char>(1 << 20);
    std::size_t begin_ = 0, end_ = 0;
    bool eof_ = false;
    std::string error_;
};

}  // namespace outbox::cli
