// The report files of `outbox send`, `enqueue` and `relay`: one JSON line per event, whole
// lines only, created 0600 (lines may hold pre-signed URLs), every write error remembered so
// the run can fail with it.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace outbox::cli {

class ReportFile {
  public:
    ~ReportFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    bool open(const std::string& path, std::string& why) {
        path_ = path;
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd_ < 0) {
            why = std::strerror(errno);
            return false;
        }
        struct stat st {};
        if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
            ::fchmod(fd_, 0600);  // an existing report gets the same protection as a new one
        return true;
    }
    bool is_open() const noexcept { return fd_ >= 0; }

    void write_line(std::string_view line) {
        if (fd_ < 0 || failed()) return;
        buffer_.append(line);
        if (buffer_.size() >= 64 * 1024) flush();
    }

    bool flush() {
        std::size_t done = 0;
        while (done < buffer_.size() && !failed()) {
            const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                error_ = std::strerror(errno);
            else
                done += static_cast<std::size_t>(n);
        }
        buffer_.clear();
        return !failed();
    }

    // Flushes and closes; false when any line did not make it to the file.
    bool close() {
        if (fd_ < 0) return !failed();
        flush();
        if (::close(fd_) != 0 && !failed()) error_ = std::strerror(errno);
        fd_ = -1;
        return !failed();
    }

    bool failed() const noexcept { return !error_.empty(); }
    std::string error() const { return "cannot write the report " + path_ + ": " + error_; }

  private:
    int fd_ = -1;
    std::string path_;
    std::string buffer_;
    std::string error_;
};

// True when `path` names the file `st` describes.
inline bool is_that_file(const struct stat& st, const std::string& path) {
    struct stat other {};
    return ::stat(path.c_str(), &other) == 0 && st.st_dev == other.st_dev &&
           st.st_ino == other.st_ino;
}

// True when both name the same file (so writing one would truncate the other).
inline bool same_file(int fd, const std::string& path) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && is_that_file(st, path);
}

// Whether `report` would overwrite the SQLite store `store` or one of the files beside it
// (opening the report truncates it): the same path, or the same file under another name.
inline bool report_is_store_file(const std::string& report, const std::string& store) {
    struct stat st {};
    const bool exists = ::stat(report.c_str(), &st) == 0;
    for (const char* suffix : {"", "-wal", "-shm", "-journal", "-relay.lock"}) {
        const std::string file = store + suffix;
        if (file == report || (exists && is_that_file(st, file))) return true;
    }
    return false;
}

}  // namespace outbox::cli
