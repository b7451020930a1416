// Fuzz target: URL path and query canonicalisation. Besides not crashing, checks the
// properties the signature depends on.
#include "aws/sigv4/sigv4_canonical.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace outbox::detail::sigv4;
using outbox::sigv4::PathRule;

bool is_unreserved(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

bool is_upper_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

// Every byte is unreserved, one of `allowed`, or part of a %XX escape with uppercase hex.
void check_encoded(std::string_view s, std::string_view allowed) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (is_unreserved(s[i]) || allowed.find(s[i]) != std::string_view::npos) continue;
        if (s[i] == '%' && i + 2 < s.size() && is_upper_hex(s[i + 1]) && is_upper_hex(s[i + 2])) {
            i += 2;
            continue;
        }
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t q = input.find('?');
    const std::string_view path = input.substr(0, q);
    const std::string_view query =
        q == std::string_view::npos ? std::string_view{} : input.substr(q + 1);

    std::string normalized;
    append_canonical_uri(normalized, path, PathRule::normalize_and_encode);
    check_encoded(normalized, "/");
    if (normalized.empty() || normalized.front() != '/') std::abort();
    if (normalized.find("//") != std::string::npos) std::abort();
    if (normalized.find("/./") != std::string::npos || normalized.find("/../") != std::string::npos)
        std::abort();

    std::string s3;
    append_canonical_uri(s3, path, PathRule::s3);
    check_encoded(s3, "/");
    // The S3 rule is idempotent: a canonical path is its own canonical form.
    std::string s3_again;
    append_canonical_uri(s3_again, s3, PathRule::s3);
    if (s3_again != s3) std::abort();

    std::string canonical;
    append_canonical_query(canonical, query);
    check_encoded(canonical, "=&");
    // Canonicalising a canonical query changes nothing (decode then encode is lossless).
    std::string again;
    append_canonical_query(again, canonical);
    if (again != canonical) std::abort();
    return 0;
}
