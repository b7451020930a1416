// Small helpers shared by the `outbox` commands: input, usage errors, URL splitting.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace outbox::cli {

/// Run first in main: a program started with descriptor 0, 1 or 2 closed would hand that
/// number to the next file it opens (Asio's eventfd, say) and then read or write it as a
/// standard stream. Each closed one is pointed at /dev/null instead. SIGPIPE is ignored, so a
/// reader that went away is a write error (EPIPE) the command reports.
void guard_standard_streams();

/// True when descriptor 0 was closed at start: input from "-" is then an error, not a hang.
bool standard_input_was_closed();

/// Flushes standard output; false (with `why`) when what was written there did not arrive
/// (a full disk, a closed pipe).
bool flush_standard_output(std::string& why);

/// Reads FILE, or standard input for "-".
bool read_input(std::string_view source, std::string& out, std::string& error);

/// The value of an environment variable; nothing when unset or empty.
std::optional<std::string> env(const char* name);

/// Prints "outbox: <message>" to stderr and returns 2, the exit status of usage errors.
int usage_error(const std::string& message);

/// A URL split the way a signature sees it. Lenient about the bytes of path and query
/// (they are signed as given), strict about scheme and authority.
struct UrlParts {
    std::string scheme;       // "http" or "https", lower case
    std::string authority;    // as given: host[:port]
    std::string host_header;  // authority without the scheme's default port
    std::string path;         // as given, may be empty
    std::string query;        // after '?', before any '#'
};

bool split_url(std::string_view url, UrlParts& out, std::string& why);

}  // namespace outbox::cli
