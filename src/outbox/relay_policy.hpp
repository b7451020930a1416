// What the relay does with an attempt that failed: the retry schedule and the maximum age, as
// a pure function of times (unit-tested with made-up clocks). Private to the library.
#pragma once

#include <outbox/outbox_store.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace outbox::detail {

inline std::string duration_text(std::chrono::seconds s) {
    const auto n = s.count();
    if (n % 3600 == 0 && n >= 3600) return std::to_string(n / 3600) + " h";
    if (n % 60 == 0 && n >= 60) return std::to_string(n / 60) + " min";
    return std::to_string(n) + " s";
}

/// The settlement of event `id` after its attempt number `attempts` (1 for the first) failed
/// with `error`: retried after retry_schedule[attempts-1] (the last entry repeats) when the
/// failure is retryable and that time is within `max_age` of `since` (when it was stored or
/// redriven); a dead letter otherwise, saying why.
inline EventOutcome after_failure(EventId id, std::uint32_t attempts, bool retryable,
                                  const std::string& error, SystemTime since, SystemTime now,
                                  const std::vector<std::chrono::seconds>& schedule,
                                  std::chrono::seconds max_age) {
    EventOutcome o;
    o.id = id;
    o.attempts = attempts;
    if (!retryable) {
        o.kind = EventOutcome::Kind::dead;
        o.error = error;
        return o;
    }
    const std::size_t step =
        std::min<std::size_t>(attempts == 0 ? 0 : attempts - 1, schedule.size() - 1);
    const SystemTime next = now + schedule[step];
    if (next > since + max_age) {
        o.kind = EventOutcome::Kind::dead;
        o.error = "still failing after its maximum age (" + duration_text(max_age) + ", " +
                  std::to_string(attempts) + " attempts); last error: " + error;
        return o;
    }
    o.kind = EventOutcome::Kind::retry;
    o.next_attempt_at = next;
    o.error = error;
    return o;
}

}  // namespace outbox::detail
