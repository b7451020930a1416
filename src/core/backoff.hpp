// Exponential backoff with full jitter, shared by the destinations and the stager.
// Private to the library.
#pragma once

#include <outbox/retry_policy.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>

namespace outbox::detail {

/// A random delay in [0, min(max_delay, base_delay * 2^(attempts-1))], at least what the
/// server asked for (capped at max_delay).
inline std::chrono::milliseconds backoff_delay(
    const RetryPolicy& p, std::uint32_t attempts, std::minstd_rand& rng,
    std::optional<std::chrono::milliseconds> server_asked = {}) {
    const auto exponent = std::min<std::uint32_t>(attempts > 0 ? attempts - 1 : 0, 30);
    const long double ceiling =
        std::min<long double>(static_cast<long double>(p.max_delay.count()),
                              static_cast<long double>(p.base_delay.count()) *
                                  static_cast<long double>(1ull << exponent));
    std::uniform_int_distribution<long long> pick(0, static_cast<long long>(ceiling));
    std::chrono::milliseconds delay(pick(rng));
    if (server_asked) delay = std::max(delay, std::min(*server_asked, p.max_delay));
    return delay;
}

}  // namespace outbox::detail
