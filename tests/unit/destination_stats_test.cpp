// The latency histogram's buckets and percentiles, and the counters behind DestinationStats.
#include "catch.hpp"

#include "core/destination_counters.hpp"

#include <outbox/latency_histogram.hpp>

#include <atomic>
#include <thread>
#include <vector>

using outbox::LatencyHistogram;
using std::chrono::microseconds;

TEST_CASE("every latency falls in the bucket whose bounds hold it, within 25% of its width") {
    std::uint64_t previous_bound = 0;
    for (std::size_t i = 0; i + 1 < LatencyHistogram::bucket_count; ++i) {
        const std::uint64_t bound = LatencyHistogram::upper_bound(i);
        INFO("bucket " << i);
        CHECK((i == 0 || bound > previous_bound));
        CHECK(LatencyHistogram::bucket_of(bound) == i);
        CHECK(LatencyHistogram::bucket_of(bound + 1) == i + 1);
        if (i >= 4) CHECK(double(bound - previous_bound) <= 0.25 * double(bound) + 1);
        previous_bound = bound;
    }
    for (std::uint64_t us : {0ull, 1ull, 3ull, 4ull, 5ull, 99ull, 1000ull, 123456ull, 9999999ull}) {
        const std::size_t i = LatencyHistogram::bucket_of(us);
        CHECK(us <= LatencyHistogram::upper_bound(i));
        CHECK((i == 0 || us > LatencyHistogram::upper_bound(i - 1)));
    }
    // Far beyond the last bound: the last bucket.
    CHECK(LatencyHistogram::bucket_of(~0ull) == LatencyHistogram::bucket_count - 1);
}

TEST_CASE("percentiles come from the buckets and never exceed the largest latency seen") {
    LatencyHistogram h;
    CHECK(h.percentile(0.99) == microseconds(0));
    auto record = [&](std::uint64_t us) {
        ++h.buckets[LatencyHistogram::bucket_of(us)];
        ++h.count;
        h.sum += microseconds(us);
        h.max = std::max(h.max, microseconds(us));
    };
    for (int i = 0; i < 90; ++i) record(1000);   // 1 ms
    for (int i = 0; i < 10; ++i) record(50000);  // 50 ms
    const auto p50 = h.percentile(0.5);
    CHECK(p50 >= microseconds(1000));
    CHECK(p50 <= microseconds(1250));
    const auto p99 = h.percentile(0.99);
    CHECK(p99 >= microseconds(40000));
    CHECK(p99 <= microseconds(50000));  // clamped to the max
    CHECK(h.percentile(1.0) == microseconds(50000));
    CHECK(h.mean() == microseconds((90 * 1000 + 10 * 50000) / 100));

    LatencyHistogram sum;
    sum += h;
    sum += h;
    CHECK(sum.count == 200);
    CHECK(sum.percentile(0.5) == p50);
}

TEST_CASE("counters add up while senders, the completing context and readers run at once") {
    outbox::detail::DestinationCounters counters;
    constexpr int senders = 4, per_sender = 10000, total = senders * per_sender;
    std::atomic<int> accepted{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < senders; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < per_sender; ++i) {
                counters.accepted(10);
                accepted.fetch_add(1, std::memory_order_release);
            }
        });
    // One completing context, as in a destination: every tenth fails, every tenth after that
    // stays in flight, the rest are delivered.
    std::atomic<std::uint64_t> snapshots{0};
    threads.emplace_back([&] {
        const auto start = outbox::detail::DestinationCounters::Clock::now();
        for (int i = 0; i < total; ++i) {
            // Halfway, wait for the reader to look once more: on a busy machine it might
            // otherwise not run before everything is done.
            if (i == total / 2)
                for (const auto seen = snapshots.load(); snapshots.load() == seen;)
                    std::this_thread::yield();
            while (accepted.load(std::memory_order_acquire) <= i) std::this_thread::yield();
            if (i % 10 == 0)
                counters.failed();
            else if (i % 10 != 1)
                counters.delivered(10, start);
        }
        done = true;
    });
    while (!done) {
        const auto s = counters.snapshot();
        REQUIRE(s.accepted == s.delivered + s.failed + s.in_flight);
        ++snapshots;
    }
    for (auto& t : threads) t.join();
    const auto s = counters.snapshot();
    CHECK(snapshots > 0);
    CHECK(s.accepted == total);
    CHECK(s.failed == total / 10);
    CHECK(s.in_flight == total / 10);
    CHECK(s.delivered == total - 2 * total / 10);
    CHECK(s.latency.count == s.delivered);
    CHECK(s.bytes_accepted == 10 * s.accepted);
    CHECK(s.bytes_delivered == 10 * s.delivered);
}
