#include "core/bounded_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outbox::detail {

FileRead read_bounded_file(const std::string& path, std::size_t max_bytes, std::string& out,
                           std::string& why) {
    out.clear();
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return FileRead::missing;
        why = std::strerror(errno);
        return FileRead::refused;
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        why = std::strerror(errno);
        return FileRead::refused;
    }
    if (!S_ISREG(st.st_mode)) {
        why = S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file";
        return FileRead::refused;
    }
    const auto too_large = [&] {
        why = "it is larger than " + std::to_string(max_bytes) + " bytes";
        return FileRead::refused;
    };
    if (static_cast<std::size_t>(st.st_size) > max_bytes) return too_large();
    out.resize(static_cast<std::size_t>(st.st_size) + 1);
    std::size_t have = 0;
    for (;;) {
        if (have == out.size()) {
            if (out.size() > max_bytes) return too_large();  // grew while being read
            out.resize(std::min(out.size() * 2, max_bytes + 1));
        }
        const ssize_t n = ::read(fd, out.data() + have, out.size() - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            why = std::strerror(errno);
            return FileRead::refused;
        }
        if (n == 0) break;
        have += static_cast<std::size_t>(n);
    }
    if (have > max_bytes) return too_large();
    out.resize(have);
    return FileRead::ok;
}

}  // namespace outbox::detail
