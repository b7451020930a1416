// The counters behind DestinationStats: relaxed atomics, so any thread may read them while
// the destination works, and recording costs a few uncontended increments.
#pragma once

#include <outbox/destination_stats.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace outbox::detail {

class DestinationCounters {
  public:
    using Clock = std::chrono::steady_clock;

    void accepted(std::size_t body_bytes) noexcept {
        add(accepted_, 1);
        add(bytes_accepted_, body_bytes);
        add(in_flight_, 1);
    }
    void delivered(std::size_t body_bytes, Clock::time_point accepted_at) noexcept {
        add(delivered_, 1);
        add(bytes_delivered_, body_bytes);
        sub_in_flight();
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - accepted_at);
        const auto value = static_cast<std::uint64_t>(us.count() < 0 ? 0 : us.count());
        add(latency_buckets_[LatencyHistogram::bucket_of(value)], 1);
        add(latency_count_, 1);
        add(latency_sum_us_, value);
        std::uint64_t seen = latency_max_us_.load(std::memory_order_relaxed);
        while (value > seen && !latency_max_us_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
        }
    }
    void failed() noexcept {
        add(failed_, 1);
        sub_in_flight();
    }
    void retried() noexcept { add(retried_, 1); }
    void staged() noexcept { add(staged_, 1); }
    void request() noexcept { add(requests_, 1); }
    void waited_for_room() noexcept { add(waits_for_room_, 1); }

    std::uint64_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }

    DestinationStats snapshot() const noexcept {
        DestinationStats s;
        // Completions first: a message completing between two loads then shows as in flight
        // rather than vanishing from the sum.
        s.delivered = load(delivered_);
        s.failed = load(failed_);
        s.in_flight = load(in_flight_);
        s.accepted = load(accepted_);
        s.retried = load(retried_);
        s.staged = load(staged_);
        s.requests = load(requests_);
        s.bytes_accepted = load(bytes_accepted_);
        s.bytes_delivered = load(bytes_delivered_);
        s.waits_for_room = load(waits_for_room_);
        for (std::size_t i = 0; i < LatencyHistogram::bucket_count; ++i)
            s.latency.buckets[i] = load(latency_buckets_[i]);
        s.latency.count = load(latency_count_);
        s.latency.sum = std::chrono::microseconds(static_cast<std::int64_t>(load(latency_sum_us_)));
        s.latency.max = std::chrono::microseconds(static_cast<std::int64_t>(load(latency_max_us_)));
        return s;
    }

  private:
    using Counter = std::atomic<std::uint64_t>;
    static void add(Counter& c, std::uint64_t n) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
    static std::uint64_t load(const Counter& c) noexcept { return c.load(std::memory_order_relaxed); }
    void sub_in_flight() noexcept { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

    Counter accepted_{0}, delivered_{0}, failed_{0}, retried_{0}, staged_{0}, requests_{0},
        bytes_accepted_{0}, bytes_delivered_{0}, waits_for_room_{0}, in_flight_{0};
    Counter latency_count_{0}, latency_sum_us_{0}, latency_max_us_{0};
    std::array<Counter, LatencyHistogram::bucket_count> latency_buckets_{};
};

}  // namespace outbox::detail
