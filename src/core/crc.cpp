#include "core/crc.hpp"

#include "core/base64.hpp"

#include <array>

namespace outbox::detail {
namespace {

// tables[0] is the classic byte-at-a-time table of the reflected polynomial; tables[k]
// advances a byte through k more zero bytes, so eight bytes fold in one step.
template <class Word, Word reflected_poly>
constexpr std::array<std::array<Word, 256>, 8> make_tables() {
    std::array<std::array<Word, 256>, 8> t{};
    for (unsigned i = 0; i < 256; ++i) {
        Word c = i;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ reflected_poly : c >> 1;
        t[0][i] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
        for (unsigned i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    return t;
}

constexpr auto crc32_tables = make_tables<std::uint32_t, 0xEDB88320u>();
constexpr auto crc64_tables = make_tables<std::uint64_t, 0x9A6C9329AC4BC9B5ull>();

std::uint64_t load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];  // compiles to one load on x86
    return v;
}

template <class Word, class Tables>
Word crc_reflected(const Tables& t, std::string_view data, Word crc) noexcept {
    auto p = reinterpret_cast<const unsigned char*>(data.data());
    std::size_t n = data.size();
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        const std::uint64_t v = load_le64(p) ^ static_cast<std::uint64_t>(crc);
        // A 32-bit CRC mixes into the low four bytes only; the high four are plain data.
        crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
              t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
              t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
    }
    for (; n > 0; --n, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xff];
    return ~crc;
}

std::string big_endian_base64(std::uint64_t value, std::size_t bytes) {
    unsigned char b[8];
    for (std::size_t i = 0; i < bytes; ++i)
        b[i] = static_cast<unsigned char>(value >> (8 * (bytes - 1 - i)));
    std::string out;
    append_base64(out, std::string_view(reinterpret_cast<const char*>(b), bytes));
    return out;
}

}  // namespace

std::uint32_t crc32(std::string_view data, std::uint32_t crc) noexcept {
    return crc_reflected<std::uint32_t>(crc32_tables, data, crc);
}

std::uint64_t crc64nvme(std::string_view data, std::uint64_t crc) noexcept {
    return crc_reflected<std::uint64_t>(crc64_tables, data, crc);
}

std::string checksum_header_value(std::uint32_t crc) {
    return big_endian_base64(crc, 4);
}

std::string checksum_header_value(std::uint64_t crc) {
    return big_endian_base64(crc, 8);
}

}  // namespace outbox::detail
