// How destinations retry what is worth retrying (see is_retryable in error.hpp).
#pragma once

#include <chrono>
#include <cstdint>

namespace outbox {

/// Exponential backoff with full jitter: before attempt n+1 the destination waits a random
/// time in [0, min(max_delay, base_delay * 2^(n-1))], and at least what the server asked
/// for with Retry-After.
struct RetryPolicy {
    std::uint32_t max_attempts = 10;  // 1 disables retries
    std::chrono::milliseconds base_delay{100};
    std::chrono::milliseconds max_delay{std::chrono::minutes(3)};
    /// From acceptance to outcome: a message still undelivered then fails (Errc::timeout, or
    /// Errc::outcome_unknown when an attempt may have delivered it, with the last attempt's
    /// error in its diagnostics). SQS cuts requests short to meet it; Kafka hands it to
    /// librdkafka as message.timeout.ms. Zero: no deadline, only max_attempts.
    std::chrono::milliseconds message_deadline{std::chrono::minutes(5)};
};

}  // namespace outbox
