// Eight bytes at a time: the fast paths of the byte scanners (JSON escaping, SQS character
// checks) skip runs of plain ASCII with these. Private to the library.
#pragma once

#include <bit>
#include <cstddef>
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

/// The offset in the word `w` (loaded from memory with load()) of its first byte, in memory
/// order, for which `is_hit` holds, given `flags` from the tests above, not zero. On a
/// little-endian machine that is the lowest flagged byte: a false flag needs a borrow from a
/// true one below it. On a big-endian one, where borrows run toward the first bytes, the
/// bytes are tested one by one.
template <class IsHit>
inline std::size_t first_flagged_byte(std::uint64_t w, std::uint64_t flags, IsHit is_hit) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        (void)w;
        (void)is_hit;
        return static_cast<std::size_t>(std::countr_zero(flags)) / 8;
    } else {
        unsigned char bytes[8];
        std::memcpy(bytes, &w, sizeof w);
        std::size_t k = 0;
        while (!is_hit(bytes[k])) ++k;
        return k;
    }
}

}  // namespace outbox::detail::swar
