// HTTP dates (RFC 9110 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"), read from Date and
// Retry-After headers to correct clock skew and honour back-off requests. Not API.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace outbox::detail {

std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view text) noexcept;

/// Retry-After: delay-seconds or an HTTP date (relative to `now`). Nothing when absent or
/// unreadable.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view text, std::chrono::system_clock::time_point now) noexcept;

}  // namespace outbox::detail
