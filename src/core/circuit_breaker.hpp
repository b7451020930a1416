// One target's circuit breaker as a state machine apart from I/O: it is told the time and
// each outcome, and answers whether a message may go and which health change to report.
// Private to the library; RoutingDestination holds one per target.
#pragma once

#include <outbox/target_health.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

namespace outbox::detail {

/// Whether a message failing with `ec` (its receipt saying `diagnostics`) says something about
/// its target (see CircuitBreakerPolicy): false for success, refusals of the message itself
/// (before sending, or an entry the service blamed on the sender), cancellation, routing's own
/// refusals and the store's errors.
bool counts_against_target(const boost::system::error_code& ec,
                           const Diagnostics& diagnostics = {}) noexcept;

class CircuitBreaker {
  public:
    using time_point = std::chrono::steady_clock::time_point;
    enum class Admission { send, probe, refuse };

    explicit CircuitBreaker(const CircuitBreakerPolicy& policy) : policy_(policy) {}

    /// Whether a message may go at `now`; `probe` is the one message let through an open
    /// breaker after its wait (no other goes until that one has ended).
    Admission admit(time_point now);
    /// The outcome of a message admitted earlier (`was_probe` when admitted as the probe).
    /// Each returns the health to report when the reported health changed.
    std::optional<TargetHealth> succeeded(bool was_probe);
    std::optional<TargetHealth> failed(time_point now, bool was_probe);
    /// A message ended without a verdict on the target (cancelled, refused as invalid).
    void ended_without_verdict(bool was_probe);

    TargetHealth health() const noexcept { return reported_; }
    bool open() const noexcept { return open_; }
    /// Open, and taking no message at `now` (its probe is out, or not due yet).
    bool refusing(time_point now) const noexcept { return open_ && (probing_ || now < reopen_at_); }
    std::uint32_t consecutive_failures() const noexcept { return failures_; }
    /// When an open breaker lets its next probe through.
    time_point next_probe_at() const noexcept { return reopen_at_; }

  private:
    std::uint32_t degraded_at() const noexcept;

    CircuitBreakerPolicy policy_;
    std::uint32_t failures_ = 0;
    TargetHealth reported_ = TargetHealth::healthy;
    bool open_ = false;
    bool probing_ = false;
    std::chrono::milliseconds wait_{0};
    time_point opened_at_{};
    time_point reopen_at_{};
};

}  // namespace outbox::detail
