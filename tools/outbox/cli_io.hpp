// Small helpers shared by the `outbox` commands: input, usage errors, URL splitting.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace outbox::cli {

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
