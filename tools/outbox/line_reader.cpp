#include "line_reader.hpp"

#include "cli_io.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace outbox::cli {

LineReader::~LineReader() {
    if (owned_ && fd_ >= 0) ::close(fd_);
}

bool LineReader::open(const std::string& source, std::string& why) {
    if (source == "-") {
        if (standard_input_was_closed()) {
            why = "standard input is closed";
            return false;
        }
        fd_ = STDIN_FILENO;
    } else {
        fd_ = ::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd_ < 0) {
            why = std::strerror(errno);
            return false;
        }
        owned_ = true;
    }
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
        why = "it is a directory";
        return false;
    }
    return true;
}

LineReader::Next LineReader::fill() {
    if (begin_ > 0) {  // keep the partial line at the front
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (end_ == buffer_.size()) {
        if (end_ >= max_line_bytes) {  // begin_ is 0 here: the whole buffer is one line
            error_ = "a line is longer than " + std::to_string(max_line_bytes >> 20) + " MiB";
            return Next::error;
        }
        buffer_.resize(std::min(buffer_.size() * 2, max_line_bytes + 1));
    }
    for (;;) {
        pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        const int ready = ::poll(fds, wake_fd_ >= 0 ? 2 : 1, -1);
        if (ready < 0 && errno == EINTR) continue;
        if (wake_fd_ >= 0 && (fds[1].revents & POLLIN) != 0) return Next::stopped;
        const ssize_t n = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) {
            error_ = std::strerror(errno);
            return Next::error;
        }
        if (n == 0) eof_ = true;
        end_ += static_cast<std::size_t>(n);
        return Next::line;
    }
}

LineReader::Next LineReader::next_buffered(std::string_view& line) {
    const char* start = buffer_.data() + begin_;
    if (const void* nl = std::memchr(start, '\n', end_ - begin_)) {
        std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - start);
        begin_ += len + 1;
        if (len > 0 && start[len - 1] == '\r') --len;
        line = std::string_view(start, len);
        return Next::line;
    }
    if (!eof_) return Next::must_read;
    if (begin_ == end_) return Next::end;
    std::size_t len = end_ - begin_;  // the last line has no '\n'
    begin_ = end_;
    if (start[len - 1] == '\r') --len;
    line = std::string_view(start, len);
    return Next::line;
}

LineReader::Next LineReader::next(std::string_view& line) {
    for (;;) {
        if (const Next r = next_buffered(line); r != Next::must_read) return r;
        if (const Next r = fill(); r != Next::line) return r;
    }
}

}  // namespace outbox::cli
