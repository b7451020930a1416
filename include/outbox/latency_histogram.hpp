// A snapshot of how long sends took, from async_send to delivery, in log-linear buckets
// (four per power of two, so any percentile is within 19% of the true value).
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace outbox {

struct LatencyHistogram {
    /// Bucket i counts latencies in (upper_bound(i-1), upper_bound(i)] microseconds; the last
    /// bucket also takes everything above its bound (about 37 hours).
    static constexpr std::size_t bucket_count = 4 * 37;

    std::array<std::uint64_t, bucket_count> buckets{};
    std::uint64_t count = 0;
    std::chrono::microseconds sum{0};
    std::chrono::microseconds max{0};

    /// The bucket a latency of `us` microseconds falls in.
    static constexpr std::size_t bucket_of(std::uint64_t us) noexcept {
        if (us < 4) return static_cast<std::size_t>(us);  // 0..3 exactly
        const int octave = 63 - std::countl_zero(us);     // us in [2^octave, 2^(octave+1))
        const auto quarter = static_cast<std::size_t>((us >> (octave - 2)) & 3);
        const std::size_t i = 4 * static_cast<std::size_t>(octave - 1) + quarter;
        return i < bucket_count ? i : bucket_count - 1;
    }
    /// The largest latency, in microseconds, that bucket `i` holds.
    static constexpr std::uint64_t upper_bound(std::size_t i) noexcept {
        if (i < 4) return i;
        const std::size_t octave = i / 4 + 1;
        const std::uint64_t step = std::uint64_t{1} << (octave - 2);
        return (std::uint64_t{1} << octave) + (i % 4 + 1) * step - 1;
    }

    /// The latency under which a fraction `q` (0..1) of the sends completed: the upper bound
    /// of the bucket the q-th one fell in, never above the largest seen. Zero when empty.
    std::chrono::microseconds percentile(double q) const noexcept {
        if (count == 0) return std::chrono::microseconds(0);
        const double wanted = q <= 0 ? 1.0 : q >= 1 ? double(count) : q * double(count);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += buckets[i];
            if (double(seen) >= wanted) {
                const auto bound =
                    std::chrono::microseconds(static_cast<std::int64_t>(upper_bound(i)));
                return bound < max ? bound : max;
            }
        }
        return max;
    }
    std::chrono::microseconds mean() const noexcept {
        return count == 0
                   ? std::chrono::microseconds(0)
                   : std::chrono::microseconds(sum.count() / static_cast<std::int64_t>(count));
    }

    LatencyHistogram& operator+=(const LatencyHistogram& other) noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i) buckets[i] += other.buckets[i];
        count += other.count;
        sum += other.sum;
        if (other.max > max) max = other.max;
        return *this;
    }
};

}  // namespace outbox
