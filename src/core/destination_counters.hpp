// The counters behind DestinationStats: relaxed atomics, so any thread may read them while
// the destination works. Acceptance may be recorded from any thread; deliveries come from one
// serialized context (the SQS strand, the Kafka mutex), so they are plain stores, with no
// locked instruction on the hot path.
#pragma once

#include <outbox/destination_stats.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>

namespace outbox::detail {

class DestinationCounters {
  public:
    using Clock = std::chrono::steady_clock;

    void accepted(std::size_t body_bytes) noexcept {
        add(accepted_, 1);
        add(bytes_accepted_, body_bytes);
    }
    /// Only from the destination's serialized context: one writer at a time.
    void delivered(std::size_t body_bytes, Clock::time_point accepted_at) noexcept {
        bump(delivered_, 1);
        bump(bytes_delivered_, body_bytes);
        const auto us =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - accepted_at);
        const auto value = static_cast<std::uint64_t>(us.count() < 0 ? 0 : us.count());
        if (Buckets* buckets = latency_buckets())
            bump((*buckets)[LatencyHistogram::bucket_of(value)], 1);
        bump(latency_sum_us_, value);
        if (value > latency_max_us_.load(std::memory_order_relaxed))
            latency_max_us_.store(value, std::memory_order_relaxed);
    }
    void failed() noexcept { add(failed_, 1); }
    void retried() noexcept { add(retried_, 1); }
    void staged() noexcept { add(staged_, 1); }
    void request() noexcept { add(requests_, 1); }
    void waited_for_room() noexcept { add(waits_for_room_, 1); }

    DestinationStats snapshot() const noexcept {
        DestinationStats s;
        // Completions first, then acceptances: a message completing between the loads shows
        // as in flight rather than going missing, and in_flight never goes below zero.
        s.delivered = load(delivered_);
        s.failed = load(failed_);
        s.accepted = load(accepted_);
        const std::uint64_t completed = s.delivered + s.failed;
        s.in_flight = s.accepted > completed ? s.accepted - completed : 0;
        s.retried = load(retried_);
        s.staged = load(staged_);
        s.requests = load(requests_);
        s.bytes_accepted = load(bytes_accepted_);
        s.bytes_delivered = load(bytes_delivered_);
        s.waits_for_room = load(waits_for_room_);
        if (const Buckets* buckets = buckets_.load(std::memory_order_acquire))
            for (std::size_t i = 0; i < LatencyHistogram::bucket_count; ++i) {
                s.latency.buckets[i] = load((*buckets)[i]);
                s.latency.count += s.latency.buckets[i];
            }
        s.latency.sum = std::chrono::microseconds(static_cast<std::int64_t>(load(latency_sum_us_)));
        s.latency.max = std::chrono::microseconds(static_cast<std::int64_t>(load(latency_max_us_)));
        return s;
    }

    DestinationCounters() = default;
    DestinationCounters(const DestinationCounters&) = delete;
    DestinationCounters& operator=(const DestinationCounters&) = delete;
    ~DestinationCounters() { delete buckets_.load(std::memory_order_relaxed); }

  private:
    using Counter = std::atomic<std::uint64_t>;
    using Buckets = std::array<Counter, LatencyHistogram::bucket_count>;

    // Made at the first delivery (by the one writer): a destination made and never used, one
    // of thousands of idle customers' targets, does not carry 1.2 KiB of empty buckets.
    // Out of memory: that latency is not counted (the snapshot's count is the buckets').
    Buckets* latency_buckets() noexcept {
        Buckets* b = buckets_.load(std::memory_order_relaxed);
        if (!b) {
            b = new (std::nothrow) Buckets{};
            buckets_.store(b, std::memory_order_release);
        }
        return b;
    }

    static void add(Counter& c, std::uint64_t n) noexcept {
        c.fetch_add(n, std::memory_order_relaxed);
    }
    // A single writer's increment: readers see the old or the new value, never a torn one.
    static void bump(Counter& c, std::uint64_t n) noexcept {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    static std::uint64_t load(const Counter& c) noexcept {
        return c.load(std::memory_order_relaxed);
    }

    // Sending threads write the first line, the completing thread the rest: apart, so that
    // they do not take the same cache line from each other on every message. (alignas on
    // the first of each line only: on a declaration list it would give every counter a line.)
    alignas(64) Counter accepted_{0};
    Counter bytes_accepted_{0}, waits_for_room_{0};
    alignas(64) Counter delivered_{0};
    Counter failed_{0}, retried_{0}, staged_{0}, requests_{0}, bytes_delivered_{0};
    Counter latency_sum_us_{0}, latency_max_us_{0};
    std::atomic<Buckets*> buckets_{nullptr};
};

}  // namespace outbox::detail
