// Isolation per target: a circuit breaker for each target of a RoutingDestination, and the
// health events it reports, so one customer's broken queue costs a handful of requests a
// minute instead of one per event, and the application hears that it is broken.
// See docs/routing.md.
#pragma once

#include <outbox/diagnostics.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace outbox {

/// When a target's breaker opens and how it is tried again. A failure is a message that
/// failed for a reason of the target's (its service's errors, throttling, transport failures,
/// timeouts, refused credentials); a message the destination refused as invalid (or the
/// service blamed on the sender), a cancelled one, or one refused by the breaker itself does
/// not count, nor does it reset the count.
struct CircuitBreakerPolicy {
    /// Consecutive failed messages that open the breaker. 0: no breaker.
    std::uint32_t failures_to_open = 5;
    /// Open, the breaker refuses messages at once (Errc::target_unavailable) for this long;
    /// the first message after the wait goes through as the probe (a breaker does not send
    /// by itself). Each failed probe doubles the wait, up to max_open_for; a successful one
    /// closes it.
    std::chrono::milliseconds open_for{std::chrono::seconds(30)};
    std::chrono::milliseconds max_open_for{std::chrono::minutes(5)};
    /// A probe that fails when the breaker has been open this long reports the target
    /// disabled (probes go on as messages come). 0: never reported.
    std::chrono::milliseconds disable_after{std::chrono::hours(24)};
};

enum class TargetHealth {
    healthy,   // (recovered) a message succeeded after the target had been reported
    degraded,  // half of failures_to_open consecutive failures (only when that is below it)
    open,      // failures_to_open consecutive failures: messages are refused until a probe
    disabled,  // a probe failed after disable_after open: the customer needs to act
};

/// "healthy", "degraded", "open", "disabled".
const char* to_string(TargetHealth health) noexcept;

struct TargetHealthEvent {
    std::string target;
    TargetHealth health = TargetHealth::healthy;
    std::uint32_t consecutive_failures = 0;  // 0 when healthy
    boost::system::error_code last_error{};  // the failure that led here (none when healthy)
    Diagnostics last_diagnostics{};          // what that failure's receipt said
    /// When the run of failures began (the time of this event when healthy).
    std::chrono::system_clock::time_point since{};
};

/// Receives health changes in the order they happened, one at a time, on the routing
/// destination's executor. It must not block; it may call the destination's methods.
using TargetHealthHandler = std::function<void(const TargetHealthEvent&)>;

/// One target's state now, for metrics and inspection.
struct TargetStatus {
    std::string target;
    TargetHealth health = TargetHealth::healthy;
    std::uint32_t consecutive_failures = 0;
    std::size_t in_flight = 0;  // messages handed to the target's destination, not yet complete
    boost::system::error_code last_error{};
};

}  // namespace outbox
