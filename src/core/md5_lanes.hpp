// MD5 of several inputs at once: sixteen in the lanes of AVX-512 registers or eight in those
// of AVX2 registers, as the CPU has them (a batch reply's ten 1 KiB bodies cost a quarter of
// what they cost one at a time with AVX-512, half with AVX2), OpenSSL's MD5 one by one
// otherwise. Private to the library; checked against OpenSSL in unit_md5_lanes and by
// tests/fuzz/fuzz_md5_lanes.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string_view>

namespace outbox::detail {

using Md5Digest = std::array<unsigned char, 16>;

/// out[i] = MD5(inputs[i]); out.size() must be at least inputs.size().
void md5_many(std::span<const std::string_view> inputs, std::span<Md5Digest> out) noexcept;

/// The same with OpenSSL, one input at a time (the reference, and the fallback).
void md5_one_by_one(std::span<const std::string_view> inputs, std::span<Md5Digest> out) noexcept;

/// The ways md5_many can go: OpenSSL one input at a time, or SIMD lanes.
enum class Md5Path { openssl, avx2, avx512 };

/// Whether this CPU can take `path`.
bool md5_path_available(Md5Path path) noexcept;

/// The fastest path this CPU can take: the one md5_many takes. The environment variable
/// OUTBOX_MD5_LANES=avx2 or =openssl caps it (read once, at the first call).
Md5Path md5_best_path() noexcept;

/// How many inputs md5_many hashes together along md5_best_path: 16, 8, or 1 (OpenSSL, one at
/// a time). Fewer cost as much as a full set: a caller with more inputs at hand can fill them.
std::size_t md5_lane_width() noexcept;

/// The path md5_best_path takes on this CPU when OUTBOX_MD5_LANES is `cap`: "avx2" or "openssl"
/// cap it, anything else leaves the fastest.
Md5Path md5_path_capped(std::string_view cap) noexcept;

/// OUTBOX_MD5_LANES when it is set to neither "avx2" nor "openssl" (so ignored), else empty:
/// SqsDestination logs a warning naming it.
std::string_view md5_lanes_ignored_setting() noexcept;

/// md5_many along `path`, which must be available (tests and the benchmark compare paths).
void md5_many_on(Md5Path path, std::span<const std::string_view> inputs,
                 std::span<Md5Digest> out) noexcept;

}  // namespace outbox::detail
