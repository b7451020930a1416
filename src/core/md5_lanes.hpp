// MD5 of several inputs at once: eight in the lanes of AVX2 registers when the CPU has them
// (a batch reply's ten bodies cost about what three cost one at a time), OpenSSL's MD5 one by
// one otherwise. Private to the library; checked against OpenSSL in unit_md5_lanes and by
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

/// Whether md5_many uses the AVX2 lanes on this CPU.
bool md5_lanes_available() noexcept;

}  // namespace outbox::detail
