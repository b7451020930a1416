// CRC-32 and CRC-64/NVME, eight bytes a step, against their catalogued check values, a bit at
// a time reference, and zlib's crc32 as Boost.CRC computes it; S3's header form of each.
#include "catch.hpp"

#include "core/crc.hpp"

#include <boost/crc.hpp>

#include <cstdint>
#include <random>
#include <string>

using outbox::detail::checksum_header_value;
using outbox::detail::crc32;
using outbox::detail::crc64nvme;

namespace {

// The definition, a bit at a time: reflected polynomial, all-ones start and final XOR.
template <class Word>
Word bitwise_crc(std::string_view data, Word reflected_poly) {
    Word crc = ~Word{0};
    for (unsigned char byte : data) {
        crc ^= byte;
        for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ reflected_poly : crc >> 1;
    }
    return ~crc;
}

std::string random_bytes(std::mt19937_64& rng, std::size_t size) {
    std::string s(size, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
}

}  // namespace

TEST_CASE("catalogued check values of \"123456789\", and nothing", "[crc]") {
    CHECK(crc32("123456789") == 0xCBF43926u);
    CHECK(crc64nvme("123456789") == 0xAE8B14860A799888ull);
    CHECK(crc32("") == 0);
    CHECK(crc64nvme("") == 0);
}

TEST_CASE("every length across the eight-byte steps, against the definition", "[crc]") {
    std::mt19937_64 rng(42);
    for (std::size_t size = 0; size <= 200; ++size) {
        const std::string data = random_bytes(rng, size);
        INFO(size << " bytes");
        CHECK(crc32(data) == bitwise_crc<std::uint32_t>(data, 0xEDB88320u));
        CHECK(crc64nvme(data) == bitwise_crc<std::uint64_t>(data, 0x9A6C9329AC4BC9B5ull));
    }
}

TEST_CASE("a MiB at once, in pieces continued, and as Boost.CRC computes CRC-32", "[crc]") {
    std::mt19937_64 rng(7);
    const std::string data = random_bytes(rng, (1u << 20) + 5);
    boost::crc_32_type boost_crc;
    boost_crc.process_bytes(data.data(), data.size());
    CHECK(crc32(data) == boost_crc.checksum());
    CHECK(crc64nvme(data) == bitwise_crc<std::uint64_t>(data, 0x9A6C9329AC4BC9B5ull));
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{13}, data.size() / 2}) {
        const std::string_view v(data);
        CHECK(crc32(v.substr(cut), crc32(v.substr(0, cut))) == crc32(data));
        CHECK(crc64nvme(v.substr(cut), crc64nvme(v.substr(0, cut))) == crc64nvme(data));
    }
}

TEST_CASE("S3's header value: the big-endian checksum in base64", "[crc]") {
    CHECK(checksum_header_value(crc32("123456789")) == "y/Q5Jg==");
    CHECK(checksum_header_value(crc64nvme("123456789")) == "rosUhgp5mIg=");
    CHECK(checksum_header_value(std::uint32_t{0}) == "AAAAAA==");
}
