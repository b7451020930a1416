#include "cli_io.hpp"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace outbox::cli {

bool read_input(std::string_view source, std::string& out, std::string& error) {
    if (source == "-") {
        std::ostringstream ss;
        ss << std::cin.rdbuf();
        out = ss.str();
        return true;
    }
    std::ifstream in{std::string(source), std::ios::binary};
    if (!in) {
        error = "cannot open " + std::string(source);
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
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
    if (authority.find('@') != std::string_view::npos) {
        why = "must not carry user information";
        return false;
    }
    for (char c : authority) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
            why = "host contains a space or control character";
            return false;
        }
    }
    out.authority = std::string(authority);
    // The port follows the last ':' unless that ':' is inside an IPv6 literal.
    const std::size_t colon = authority.rfind(':');
    const std::size_t bracket = authority.rfind(']');
    std::string_view host = authority;
    std::string_view port;
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        for (char c : port) {
            if (c < '0' || c > '9') {
                why = "port is not a number";
                return false;
            }
        }
    }
    const bool default_port = port.empty() || (out.scheme == "https" && port == "443") ||
                              (out.scheme == "http" && port == "80");
    out.host_header = default_port ? std::string(host) : std::string(authority);

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
