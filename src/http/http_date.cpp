#include "http/http_date.hpp"

#include "core/clock_range.hpp"

#include <charconv>

namespace outbox::detail {
namespace {

bool read_int(std::string_view s, std::size_t pos, std::size_t len, int& out) {
    if (pos + len > s.size()) return false;
    for (std::size_t i = pos; i < pos + len; ++i)
        if (s[i] < '0' || s[i] > '9') return false;  // from_chars would take a sign
    const auto r = std::from_chars(s.data() + pos, s.data() + pos + len, out);
    return r.ec == std::errc() && r.ptr == s.data() + pos + len;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view s) noexcept {
    // "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions.
    if (s.size() != 29 || s[3] != ',' || s.substr(25) != " GMT") return std::nullopt;
    static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const auto m = months.find(s.substr(8, 3));
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    if (m == std::string_view::npos || m % 3 != 0 || !read_int(s, 5, 2, day) ||
        !read_int(s, 12, 4, year) || !read_int(s, 17, 2, hour) || !read_int(s, 20, 2, minute) ||
        !read_int(s, 23, 2, second) || s[19] != ':' || s[22] != ':')
        return std::nullopt;
    using namespace std::chrono;
    const year_month_day ymd{std::chrono::year(year),
                             std::chrono::month(static_cast<unsigned>(m / 3 + 1)),
                             std::chrono::day(static_cast<unsigned>(day))};
    if (!ymd.ok() || !clock_holds_year(year) || hour > 23 || minute > 59 || second > 60)
        return std::nullopt;
    return sys_days(ymd) + hours(hour) + minutes(minute) + seconds(second);
}

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view text, std::chrono::system_clock::time_point now) noexcept {
    if (text.empty()) return std::nullopt;
    long long secs = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), secs);
    if (r.ec == std::errc() && r.ptr == text.data() + text.size()) {
        if (secs < 0) return std::nullopt;
        // Saturated, not overflowed: the backoff caps what a server asks at max_delay.
        constexpr long long most = std::chrono::milliseconds::max().count() / 1000;
        return secs > most ? std::chrono::milliseconds::max()
                           : std::chrono::milliseconds(secs * 1000);
    }
    if (auto when = parse_http_date(text)) {
        if (*when <= now) return std::chrono::milliseconds(0);
        return std::chrono::duration_cast<std::chrono::milliseconds>(*when - now);
    }
    return std::nullopt;
}

}  // namespace outbox::detail
