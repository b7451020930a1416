#include "cli_io.hpp"

#include <outbox/http_client.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace outbox::cli {

namespace {
bool stdin_closed = false;
}

void guard_standard_streams() {
    // A reader that went away (a pipe to head, a FIFO) is a write error to report, not a
    // silent death that loses the summary and the rest of the report.
    ::signal(SIGPIPE, SIG_IGN);
    for (int fd = 0; fd <= 2; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        const int opened = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (opened != fd && opened >= 0) {  // cannot happen: the lowest free number is fd
            ::dup2(opened, fd);
            ::close(opened);
        }
        if (fd == 0) stdin_closed = true;
    }
}

bool standard_input_was_closed() {
    return stdin_closed;
}

bool flush_standard_output(std::string& why) {
    std::cout.flush();
    if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0 || !std::cout) {
        why = std::strerror(errno != 0 ? errno : EIO);
        return false;
    }
    return true;
}

bool read_input(std::string_view source, std::string& out, std::string& error) {
    if (source == "-") {
        if (stdin_closed) {
            error = "standard input is closed";
            return false;
        }
        std::ostringstream ss;
        ss << std::cin.rdbuf();
        out = ss.str();
        return true;
    }
    std::ifstream in{std::string(source), std::ios::binary};
    if (!in) {
        error = "cannot open " + std::string(source) + ": " + std::strerror(errno);
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {  // a directory, or an I/O error: not the end of the input
        error = "cannot read " + std::string(source) + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

int usage_error(const std::string& message) {
    std::cerr << "outbox: " << message << "\n";
    return 2;
}

bool split_url(std::string_view url, UrlParts& out, std::string& why) {
    const std::size_t sep = url.find("://");
    if (sep == std::string_view::npos) {
        why = "must be an absolute http or https URL";
        return false;
    }
    out.scheme.clear();
    for (char c : url.substr(0, sep))
        out.scheme.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c);
    if (out.scheme != "http" && out.scheme != "https") {
        why = "scheme must be http or https";
        return false;
    }
    std::string_view rest = url.substr(sep + 3);
    if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos)
        rest = rest.substr(0, hash);
    const std::size_t auth_end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, auth_end);
    if (authority.empty()) {
        why = "has no host";
        return false;
    }
    // The authority goes through the library's (Boost.URL) parser: host and port strictly.
    HttpOrigin origin;
    std::string target;
    if (parse_http_url(out.scheme + "://" + std::string(authority) + "/", origin, target, &why))
        return false;
    out.authority = std::string(authority);
    out.host_header = origin.host_header();

    rest = auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
    const std::size_t q = rest.find('?');
    out.path = std::string(rest.substr(0, q));
    out.query = q == std::string_view::npos ? std::string() : std::string(rest.substr(q + 1));
    return true;
}

std::optional<std::string> env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
}

}  // namespace outbox::cli
