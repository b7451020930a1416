// HTTP values without I/O (URLs, the Host header, header lookup): kept apart from the client
// so the fuzz build compiles these parsers without the Asio client around them.
#include <outbox/http_client.hpp>

#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <string>

namespace outbox {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) {
            return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

}  // namespace

std::string HttpOrigin::host_header() const {
    // Built piece by piece: GCC 12 at -O3 warns (-Wrestrict, falsely) on "[" + string.
    const bool ipv6 = host.find(':') != std::string::npos;
    std::string h;
    h.reserve(host.size() + 8);
    if (ipv6) h += '[';
    h += host;
    if (ipv6) h += ']';
    if (port != (tls ? 443 : 80)) {
        h += ':';
        h += std::to_string(port);
    }
    return h;
}

boost::system::error_code parse_http_url(std::string_view url, HttpOrigin& origin,
                                         std::string& target, std::string* why) {
    auto refuse = [why](const char* reason) {
        if (why != nullptr) *why = reason;
        return make_error_code(Errc::invalid_url);
    };
    const auto parsed = boost::urls::parse_uri(url);
    if (!parsed) return refuse("not an absolute URL");
    const auto scheme = parsed->scheme_id();
    if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https)
        return refuse("the scheme must be http or https");
    if (parsed->has_userinfo()) return refuse("user information (user@) is not allowed");
    // Boost.URL 1.81 reads "http://127.0.0.1.evil.example/" as host 127.0.0.1 with the path
    // ".evil.example/": after an authority, a path must start with '/'.
    const auto path = parsed->encoded_path();
    if (!path.empty() && path.front() != '/') return refuse("the host is not a valid host name");
    switch (parsed->host_type()) {
        case boost::urls::host_type::ipv4:
        case boost::urls::host_type::ipv6:
            break;
        case boost::urls::host_type::name: {
            const std::string_view host = parsed->encoded_host();
            const bool ok = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_';
            });
            if (!ok) return refuse("the host is not a valid host name");
            break;
        }
        default:
            return refuse("the URL has no host");
    }
    origin.tls = scheme == boost::urls::scheme::https;
    origin.host = parsed->host_type() == boost::urls::host_type::ipv6 ? parsed->host_address()
                                                                      : parsed->host();
    if (parsed->has_port()) {
        // port_number() wraps 99999 to 34463: read the digits ourselves.
        const std::string_view digits = parsed->port();
        unsigned port = 0;
        const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (digits.empty() || r.ec != std::errc() || r.ptr != digits.data() + digits.size() ||
            port == 0 || port > 65535)
            return refuse("the port must be a number from 1 to 65535");
        origin.port = static_cast<std::uint16_t>(port);
    } else {
        origin.port = origin.tls ? 443 : 80;
    }
    target = path.empty() ? "/" : std::string(path);
    if (parsed->has_query()) {
        // As in host_header, piece by piece.
        const auto query = parsed->encoded_query();
        target += '?';
        target.append(query.data(), query.size());
    }
    return {};
}

std::string_view HttpResponse::header(std::string_view name) const noexcept {
    for (const auto& [n, v] : headers)
        if (iequals(n, name)) return v;
    return {};
}

}  // namespace outbox
