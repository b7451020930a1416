// One Destination in front of many: a user function picks each message's target (a queue
// URL, a topic, a tenant name), and the destination for a target is made on first use, then
// kept. Each target is isolated from the others: a bound on its messages in flight and a
// circuit breaker that stops sending to a broken one. See docs/routing.md.
#pragma once

#include <outbox/destination.hpp>
#include <outbox/target_health.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace outbox {

struct RoutingDestinationConfig {
    /// Names the target of a message. Called inside async_send, on the sending thread (so
    /// from several threads at once if sends are). Returning an empty string or throwing fails
    /// the message with Errc::no_route. Empty: the target is Message::target, which is never
    /// sent (unlike an attribute, which would reach the customer's queue).
    std::function<std::string(const Message&)> route{};
    /// Makes the destination for a target seen for the first time. Throwing (say
    /// std::invalid_argument for a queue URL that does not parse) or returning null fails the
    /// message with Errc::no_route and the reason; the next message to that target asks again.
    /// Should a destination it made throw from async_send, the exception reaches the caller
    /// of the router's async_send, and the message counts no longer against the target.
    std::function<std::unique_ptr<Destination>(const std::string& target)> make_destination{};
    /// Targets kept at once. A message to a new target beyond this fails with
    /// Errc::no_route: a route function that invents targets cannot exhaust memory.
    std::size_t max_destinations = 1000;
    /// Messages one target may hold at once (handed to its destination and not yet
    /// complete). A message beyond it fails at once with Errc::target_busy, so a target whose
    /// requests hang cannot hold the process's memory or the others' share. 0: no bound.
    std::size_t max_in_flight_per_target = 10000;
    /// An optional rate per target (a token bucket): at most `per_second` messages a second
    /// on average, `burst` at once; beyond it a message fails at once with Errc::target_busy
    /// (the caller, or the outbox, tries again later). 0 per second: no limit.
    struct RateLimit {
        double per_second = 0;
        double burst = 1;
    } rate_limit_per_target{};
    /// Each target's circuit breaker: after failures_to_open consecutive failed messages the
    /// target's messages fail at once with Errc::target_unavailable (no request) until a
    /// probe succeeds. See target_health.hpp.
    CircuitBreakerPolicy breaker{};
    /// Told when a target becomes degraded, open, disabled, or healthy again.
    TargetHealthHandler on_health{};
    /// A healthy target with nothing in flight for this long has its destination closed and
    /// forgotten (made again by its next message), so thousands of targets that each send
    /// rarely hold no connections, threads or buffers between their events. Idle targets are
    /// looked for as messages come, at most every half timeout (no timer keeps the event loop
    /// busy). A target whose breaker is not closed is kept (its breaker remembers the
    /// failures). 0: kept for good.
    std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
};

class RoutingDestination final : public Destination {
  public:
    /// Throws std::invalid_argument without make_destination, with max_destinations of 0, with
    /// a breaker whose max_open_for is shorter than its open_for, or a negative idle_timeout.
    RoutingDestination(boost::asio::any_io_executor executor, RoutingDestinationConfig config);
    /// Destroys the destinations it made (each fails what it still holds, as its own
    /// destructor says).
    ~RoutingDestination() override;
    RoutingDestination(const RoutingDestination&) = delete;
    RoutingDestination& operator=(const RoutingDestination&) = delete;

    executor_type get_executor() const noexcept override;

    /// The sum over every target (forgotten idle ones included), plus the messages refused
    /// for want of a route.
    DestinationStats stats() const override;
    /// Each kept target's own figures, in the order the targets were first seen.
    std::vector<std::pair<std::string, DestinationStats>> stats_by_target() const;
    /// Targets kept now (made, and not forgotten as idle).
    std::size_t target_count() const;
    /// Targets forgotten as idle so far, and the sum of their last figures.
    std::uint64_t evicted_count() const;
    DestinationStats forgotten_stats() const;
    /// Each target's breaker and in-flight count, in the order the targets were first seen.
    std::vector<TargetStatus> target_status() const;

    /// Applies to the destinations made so far and later ones; letters name their target.
    void set_dead_letter_handler(DeadLetterHandler handler) override;

  protected:
    void do_send(Message&& message, SendHandler handler) override;
    /// Closes every target's destination at once, each with `deadline`; completes when all
    /// have, with the first error any reported.
    void do_close(std::chrono::milliseconds deadline, CloseHandler handler) override;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace outbox
