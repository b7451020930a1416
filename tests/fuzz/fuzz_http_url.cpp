// Fuzz target: parse_http_url, which every URL we accept goes through (queue URLs, endpoints,
// GetQueueUrl's answer, credential endpoints from the environment). Its invariants: what it
// accepts is a plain host (a name, IPv4 or IPv6), a port from 1 to 65535, a target that
// starts with '/', and parsing the URL rebuilt from the parts gives the same parts.
#include <outbox/http_client.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks a prefix, so random inputs reach the host and port rules.
    static constexpr std::string_view prefixes[] = {"", "http://", "https://", "http://127.0.0.1"};
    std::string url(prefixes[data[0] % 4]);
    url.append(reinterpret_cast<const char*>(data) + 1, size - 1);
    outbox::HttpOrigin origin;
    std::string target, why;
    if (outbox::parse_http_url(url, origin, target, &why)) {
        if (why.empty()) std::abort();  // every refusal says why
        return 0;
    }
    if (origin.host.empty() || origin.port == 0 || target.empty() || target.front() != '/')
        std::abort();
    for (char c : origin.host) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == ':';
        if (!ok) std::abort();  // nothing that could smuggle a path, user or port into a host
    }
    const std::string rebuilt =
        std::string(origin.tls ? "https://" : "http://") + origin.host_header() + target;
    outbox::HttpOrigin again;
    std::string again_target;
    if (outbox::parse_http_url(rebuilt, again, again_target)) std::abort();
    if (!(again == origin) || again_target != target) std::abort();
    return 0;
}
