// What a destination has done so far, readable at any time from any thread.
#pragma once

#include <outbox/latency_histogram.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace outbox {

struct DestinationStats {
    /// Every async_send call, including messages refused at once. In a snapshot
    /// accepted == delivered + failed + in_flight.
    std::uint64_t accepted = 0;
    std::uint64_t delivered = 0;
    /// Completed with an error, whatever the reason; each of these went to the dead-letter
    /// handler when one was set.
    std::uint64_t failed = 0;
    /// Attempts after a message's first (SQS). librdkafka does not report its retries: 0.
    std::uint64_t retried = 0;
    std::uint64_t staged = 0;           // bodies uploaded to S3 by the stager
    std::uint64_t requests = 0;         // SendMessage(Batch) requests (SQS); 0 for Kafka
    std::uint64_t bytes_accepted = 0;   // bodies as given to async_send
    std::uint64_t bytes_delivered = 0;  // bodies as sent (a staged body counts as its link)
    std::uint64_t waits_for_room = 0;   // sends that had to wait for in-flight room
    std::uint64_t in_flight = 0;        // accepted, not yet completed (at the snapshot)
    /// From async_send to delivery, for delivered messages.
    LatencyHistogram latency{};

    DestinationStats& operator+=(const DestinationStats& other) noexcept {
        accepted += other.accepted;
        delivered += other.delivered;
        failed += other.failed;
        retried += other.retried;
        staged += other.staged;
        requests += other.requests;
        bytes_accepted += other.bytes_accepted;
        bytes_delivered += other.bytes_delivered;
        waits_for_room += other.waits_for_room;
        in_flight += other.in_flight;
        latency += other.latency;
        return *this;
    }
};

/// Three lines for people: counts and bytes; retries, staging and waits; latency percentiles.
std::string describe(const DestinationStats& stats);

}  // namespace outbox
