// Eight bytes at a time: the fast paths of the byte scanners (JSON escaping, SQS character
// checks) skip runs of plain ASCII with these. Private to the library.
#pragma once

#include <cstdint>
#include <cstring>

namespace outbox::detail::swar {

inline constexpr std::uint64_t ones = 0x0101010101010101ull;
inline constexpr std::uint64_t highs = 0x8080808080808080ull;

inline std::uint64_t load(const char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
}

/// Non-zero when some byte of `w` is zero.
inline std::uint64_t has_zero(std::uint64_t w) noexcept {
    return (w - ones) & ~w & highs;
}
/// Non-zero when some byte of `w` equals `b`.
inline std::uint64_t has_byte(std::uint64_t w, unsigned char b) noexcept {
    return has_zero(w ^ (ones * b));
}
/// Non-zero when some byte of `w` is below `n` (n <= 128).
inline std::uint64_t has_less(std::uint64_t w, unsigned char n) noexcept {
    return (w - ones * n) & ~w & highs;
}
/// Non-zero when some byte of `w` is 0x80 or above.
inline std::uint64_t has_high(std::uint64_t w) noexcept {
    return w & highs;
}

}  // namespace outbox::detail::swar
