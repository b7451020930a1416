// What the relay does with an attempt that failed: the retry schedule and the maximum age, as
// a pure function of times (unit-tested with made-up clocks). Private to the library.
#pragma once

#include <outbox/error.hpp>
#include <outbox/outbox_store.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace outbox::detail {

/// Whether the relay retries a failure on its schedule: what is_retryable says, and besides
/// the failures of its own access to the target (no credentials, expired ones, an
/// authentication or TLS refusal). Those are the operator's to fix, not the event's: a relay
/// whose keys broke for an hour keeps its backlog pending instead of turning it into dead
/// letters that need a redrive.
inline bool relay_retries(const boost::system::error_code& ec) {
    if (is_retryable(ec) || ec == boost::asio::error::operation_aborted) return true;
    if (ec.category() != error_category()) return false;
    switch (static_cast<Errc>(ec.value())) {
        case Errc::missing_credentials:
        case Errc::credentials_not_found:
        case Errc::credentials_expired:
        case Errc::invalid_credentials_response:
        case Errc::unsupported_profile:
        case Errc::unreadable_profile_file:
        case Errc::authentication_failed:
        case Errc::tls_error:
            return true;
        default:
            return false;
    }
}

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
