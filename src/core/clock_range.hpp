// The years a time read from outside (an HTTP date, a credentials expiry, a signing time, a
// link's expiry) may name. system_clock counts nanoseconds in 64 bits, years 1678 to 2261:
// outside 1970 to 2200 a time is not a clock's, and inside it any difference of two (a clock
// correction, an expiry less now) stays within range. Private to the library.
#pragma once

#include <chrono>
#include <cstdint>

namespace outbox::detail {

inline constexpr int earliest_clock_year = 1970;
inline constexpr int latest_clock_year = 2200;

inline constexpr bool clock_holds_year(int year) noexcept {
    return year >= earliest_clock_year && year <= latest_clock_year;
}

/// The end of the range, 2200-01-01T00:00:00Z: what a far-future time is taken as.
inline constexpr std::chrono::sys_days clock_range_end{std::chrono::year{latest_clock_year} /
                                                       std::chrono::January / 1};
inline constexpr std::int64_t clock_range_end_seconds =
    std::chrono::sys_seconds(clock_range_end).time_since_epoch().count();

}  // namespace outbox::detail
