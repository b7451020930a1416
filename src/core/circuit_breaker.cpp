#include "core/circuit_breaker.hpp"

#include <outbox/error.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>

namespace outbox {

const char* to_string(TargetHealth health) noexcept {
    switch (health) {
        case TargetHealth::healthy:
            return "healthy";
        case TargetHealth::degraded:
            return "degraded";
        case TargetHealth::open:
            return "open";
        case TargetHealth::disabled:
            return "disabled";
    }
    return "unknown";
}

namespace detail {

bool counts_against_target(const boost::system::error_code& ec,
                           const Diagnostics& diagnostics) noexcept {
    if (!ec || ec == boost::asio::error::operation_aborted) return false;
    if (diagnostics.sender_fault) return false;  // the service blamed the message, not itself
    if (ec.category() != error_category()) return true;  // transport failures
    switch (static_cast<Errc>(ec.value())) {
        case Errc::invalid_argument:
        case Errc::invalid_timestamp:
        case Errc::invalid_expiry:
        case Errc::payload_too_large:
        case Errc::invalid_message:
        case Errc::no_route:
        case Errc::target_unavailable:
        case Errc::target_busy:
        case Errc::close_timeout:
        case Errc::store_error:
        case Errc::store_full:
            return false;
        default:
            return true;
    }
}

std::uint32_t CircuitBreaker::degraded_at() const noexcept {
    return std::max<std::uint32_t>(1, (policy_.failures_to_open + 1) / 2);
}

CircuitBreaker::Admission CircuitBreaker::admit(time_point now) {
    if (!open_) return Admission::send;
    if (probing_ || now < reopen_at_) return Admission::refuse;
    probing_ = true;
    return Admission::probe;
}

std::optional<TargetHealth> CircuitBreaker::succeeded(bool was_probe) {
    if (was_probe) probing_ = false;
    failures_ = 0;
    open_ = false;
    if (reported_ == TargetHealth::healthy) return std::nullopt;
    reported_ = TargetHealth::healthy;
    return reported_;
}

std::optional<TargetHealth> CircuitBreaker::failed(time_point now, bool was_probe) {
    // A probe's place is freed whatever state it comes back to (an older message's success
    // may have closed the breaker meanwhile).
    if (was_probe) probing_ = false;
    if (failures_ != UINT32_MAX) ++failures_;
    if (policy_.failures_to_open == 0) return std::nullopt;
    if (open_) {
        // A message sent before the breaker opened says no more than the failures that
        // opened it; only the probe moves the next one further away.
        if (!was_probe) return std::nullopt;
        wait_ = std::min(wait_ * 2, std::max(policy_.max_open_for, policy_.open_for));
        reopen_at_ = now + wait_;
        if (policy_.disable_after.count() > 0 && now - opened_at_ >= policy_.disable_after &&
            reported_ != TargetHealth::disabled) {
            reported_ = TargetHealth::disabled;
            return reported_;
        }
        return std::nullopt;
    }
    if (failures_ >= policy_.failures_to_open) {
        open_ = true;
        opened_at_ = now;
        wait_ = policy_.open_for;
        reopen_at_ = now + wait_;
        reported_ = TargetHealth::open;
        return reported_;
    }
    if (reported_ == TargetHealth::healthy && degraded_at() < policy_.failures_to_open &&
        failures_ >= degraded_at()) {
        reported_ = TargetHealth::degraded;
        return reported_;
    }
    return std::nullopt;
}

void CircuitBreaker::ended_without_verdict(bool was_probe) {
    if (was_probe) probing_ = false;
}

}  // namespace detail
}  // namespace outbox
