#include "core/circuit_breaker.hpp"
#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"
#include "core/strand_executor.hpp"
#include "core/token_bucket.hpp"

#include <outbox/routing_destination.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// One target: its destination, and what isolates the others from it.
struct Target {
    Target(std::string n, std::unique_ptr<Destination> d, const CircuitBreakerPolicy& policy)
        : name(std::move(n)), destination(std::move(d)), breaker(policy) {}
    std::string name;
    std::unique_ptr<Destination> destination;
    // The rest is guarded by the routing destination's mutex.
    detail::CircuitBreaker breaker;
    std::size_t in_flight = 0;
    std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();
    std::optional<detail::TokenBucket> rate;  // with RoutingDestinationConfig::rate_limit
    error_code last_error;
    Diagnostics last_diagnostics;
    std::chrono::system_clock::time_point failing_since;
};

std::string seconds_text(std::chrono::steady_clock::duration d) {
    const auto s = std::chrono::ceil<std::chrono::seconds>(d).count();
    return std::to_string(s < 0 ? 0 : s) + " s";
}

}  // namespace

struct RoutingDestination::Impl {
    Impl(asio::any_io_executor ex, RoutingDestinationConfig cfg)
        : executor(std::move(ex)),
          health_events(detail::make_strand_executor(executor)),
          config(std::move(cfg)) {}

    asio::any_io_executor executor;
    asio::any_io_executor health_events;  // a strand: one at a time, in order
    RoutingDestinationConfig config;
    // Shared with the targets' dead-letter handlers, which may outlive a failed make.
    std::shared_ptr<detail::DeadLetterSlot> dead_letters =
        std::make_shared<detail::DeadLetterSlot>();
    detail::DestinationCounters refused;  // messages that never reached a target

    mutable std::mutex mutex;  // guards the two below; never held while a target works
    std::vector<std::unique_ptr<Target>> targets;  // first-seen order
    std::unordered_map<std::string, Target*> by_name;
    bool closing = false;
    DestinationStats forgotten;  // the last figures of targets forgotten as idle
    std::uint64_t evicted = 0;
    // When idle targets are next looked for; read without the lock on every send.
    std::atomic<std::chrono::steady_clock::rep> next_idle_scan{0};

    // The target, its destination made on first use, and the message admitted to it, under
    // one lock (so an idle target cannot be forgotten in between); null with `ec` and `why`
    // when there is none or it takes no message now.
    Target* find_or_make(const std::string& target, error_code& ec, std::string& why, bool& probe) {
        {
            std::lock_guard lock(mutex);
            if (Target* known = keep(target, nullptr, ec, why))
                return admitted(*known, ec, why, probe);
            if (ec) return nullptr;
        }
        // Made outside the lock (a constructor may take a while); a racing send to the same
        // new target may make a second one, and the loser is dropped unused.
        std::unique_ptr<Destination> made;
        try {
            made = config.make_destination(target);
            if (!made) why = "make_destination returned no destination";
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
            why = "make_destination threw";
        }
        if (!made) {
            ec = Errc::no_route;
            why = "routing: no destination for \"" + target + "\": " + why;
            return nullptr;
        }
        made->set_dead_letter_handler([slot = dead_letters](DeadLetter&& letter) {
            if (auto handler = slot->get()) (*handler)(std::move(letter));
        });
        std::lock_guard lock(mutex);
        Target* t = keep(target, std::move(made), ec, why);
        return t ? admitted(*t, ec, why, probe) : nullptr;
    }

    Target* admitted(Target& t, error_code& ec, std::string& why, bool& probe) {
        why = admit(t, probe, ec);
        return ec ? nullptr : &t;
    }

    // Under the lock: the table's entry for `target`; else `made` entered in it, when the
    // router is open and has room (null `made`: only look). Run before the factory and again
    // after it, since other sends may have changed the table meanwhile.
    Target* keep(const std::string& target, std::unique_ptr<Destination> made, error_code& ec,
                 std::string& why) {
        if (auto it = by_name.find(target); it != by_name.end()) return it->second;
        if (closing) {
            ec = asio::error::operation_aborted;
            why = "the routing destination is closed";
            return nullptr;
        }
        if (targets.size() >= config.max_destinations) {
            ec = Errc::no_route;
            why = "routing: " + std::to_string(config.max_destinations) +
                  " targets exist (max_destinations); none made for \"" + target + "\"";
            return nullptr;
        }
        if (!made) return nullptr;
        Target* t =
            targets.emplace_back(std::make_unique<Target>(target, std::move(made), config.breaker))
                .get();
        by_name.emplace(target, t);
        return t;
    }

    // Targets idle for idle_timeout are forgotten, looked for at most every half timeout as
    // messages come (a timer would keep the caller's event loop running for it). `except`
    // is the target the calling send is for.
    void forget_idle(const std::string& except) {
        if (config.idle_timeout.count() <= 0) return;
        const auto now = std::chrono::steady_clock::now();
        if (now.time_since_epoch().count() < next_idle_scan.load(std::memory_order_relaxed)) return;
        std::vector<std::unique_ptr<Target>> idle;
        {
            std::lock_guard lock(mutex);
            if (closing || now.time_since_epoch().count() < next_idle_scan.load()) return;
            next_idle_scan.store((now + config.idle_timeout / 2).time_since_epoch().count());
            for (auto it = targets.begin(); it != targets.end();) {
                Target& t = **it;
                if (t.in_flight == 0 && !t.breaker.open() &&
                    t.breaker.health() == TargetHealth::healthy &&
                    t.breaker.consecutive_failures() == 0 &&
                    now - t.last_active >= config.idle_timeout && t.name != except) {
                    forgotten += t.destination->stats();
                    ++evicted;
                    by_name.erase(t.name);
                    idle.push_back(std::move(*it));
                    it = targets.erase(it);
                } else {
                    ++it;
                }
            }
        }
        // Nothing is in flight: each close completes at once. A destination is destroyed in
        // a handler of its own, never inside its close's completion.
        for (auto& t : idle) {
            Destination* d = t->destination.get();
            d->async_close(std::chrono::seconds(1),
                           [ex = executor, t = std::move(t)](error_code) mutable {
                               asio::post(ex, [t = std::move(t)] {});
                           });
        }
    }

    // Under the lock: why `t` takes no message now (empty when it does); admits it otherwise.
    std::string admit(Target& t, bool& probe, error_code& ec) {
        if (config.max_in_flight_per_target != 0 &&
            t.in_flight >= config.max_in_flight_per_target) {
            ec = Errc::target_busy;
            return "routing: \"" + t.name + "\" holds " + std::to_string(t.in_flight) +
                   " messages in flight (max_in_flight_per_target)";
        }
        const auto now = std::chrono::steady_clock::now();
        if (const auto& limit = config.rate_limit_per_target; limit.per_second > 0) {
            if (!t.rate) t.rate.emplace(limit.per_second, limit.burst, now);
            if (!t.rate->take(now)) {
                ec = Errc::target_busy;
                return "routing: \"" + t.name + "\" is over its rate limit of " +
                       std::to_string(limit.per_second) +
                       " messages a second (rate_limit_per_target)";
            }
        }
        const auto admission = t.breaker.admit(now);
        if (admission == detail::CircuitBreaker::Admission::refuse) {
            ec = Errc::target_unavailable;
            const std::string last = !t.last_diagnostics.message.empty()
                                         ? t.last_diagnostics.message
                                         : t.last_error.message();
            return "routing: \"" + t.name + "\" is unavailable: its circuit breaker opened after " +
                   std::to_string(t.breaker.consecutive_failures()) +
                   " consecutive failures; next probe in " +
                   seconds_text(t.breaker.next_probe_at() - now) + "; last error: " + last;
        }
        probe = admission == detail::CircuitBreaker::Admission::probe;
        ++t.in_flight;
        t.last_active = now;
        return {};
    }

    // Under the lock: a message `t` admitted has ended; its verdict moves the breaker, and a
    // change of health is posted to the handler in the order it happened.
    void ended(const std::shared_ptr<Impl>& self, Target& t, bool probe, const error_code& ec,
               const Receipt& receipt) {
        --t.in_flight;
        t.last_active = std::chrono::steady_clock::now();
        std::optional<TargetHealth> change;
        if (!ec) {
            change = t.breaker.succeeded(probe);
        } else if (detail::counts_against_target(ec, receipt.diagnostics)) {
            if (t.breaker.consecutive_failures() == 0)
                t.failing_since = std::chrono::system_clock::now();
            t.last_error = ec;
            t.last_diagnostics = receipt.diagnostics;
            change = t.breaker.failed(std::chrono::steady_clock::now(), probe);
        } else {
            t.breaker.ended_without_verdict(probe);
        }
        if (!change || !config.on_health) return;
        TargetHealthEvent event;
        event.target = t.name;
        event.health = *change;
        if (*change == TargetHealth::healthy) {
            event.since = std::chrono::system_clock::now();
        } else {
            event.consecutive_failures = t.breaker.consecutive_failures();
            event.last_error = t.last_error;
            event.last_diagnostics = t.last_diagnostics;
            event.since = t.failing_since;
        }
        asio::post(health_events, [self, event = std::move(event)] {
            try {
                self->config.on_health(event);
            } catch (...) {  // the application's handler failing must not end the event loop
            }
        });
    }

    void refuse(Message message, SendHandler handler, error_code ec, std::string why,
                std::string target) {
        refused.accepted(message.body.size());
        refused.failed();
        detail::post_refusal(executor, *dead_letters, {}, std::move(message), ec, std::move(why),
                             std::move(target), std::move(handler));
    }
};

RoutingDestination::RoutingDestination(asio::any_io_executor executor,
                                       RoutingDestinationConfig config) {
    if (!config.make_destination)
        throw std::invalid_argument("RoutingDestination: make_destination is required");
    if (config.max_destinations == 0)
        throw std::invalid_argument("RoutingDestination: max_destinations must be positive");
    if (config.breaker.max_open_for < config.breaker.open_for)
        throw std::invalid_argument(
            "RoutingDestination: breaker.max_open_for is shorter than breaker.open_for");
    if (config.idle_timeout.count() < 0)
        throw std::invalid_argument("RoutingDestination: idle_timeout is negative");
    if (!(config.rate_limit_per_target.per_second >= 0) ||
        !(config.rate_limit_per_target.burst >= 1))
        throw std::invalid_argument(
            "RoutingDestination: rate_limit_per_target needs per_second >= 0 and burst >= 1");
    impl_ = std::make_shared<Impl>(std::move(executor), std::move(config));
}

RoutingDestination::~RoutingDestination() = default;

RoutingDestination::executor_type RoutingDestination::get_executor() const noexcept {
    return impl_->executor;
}

DestinationStats RoutingDestination::stats() const {
    DestinationStats sum = impl_->refused.snapshot();
    // Under the lock: a target forgotten meanwhile is counted once, never zero times.
    std::lock_guard lock(impl_->mutex);
    sum += impl_->forgotten;
    for (auto& t : impl_->targets) sum += t->destination->stats();
    return sum;
}

std::vector<std::pair<std::string, DestinationStats>> RoutingDestination::stats_by_target() const {
    std::vector<std::pair<std::string, Destination*>> targets;
    {
        std::lock_guard lock(impl_->mutex);
        for (auto& t : impl_->targets) targets.emplace_back(t->name, t->destination.get());
    }
    std::vector<std::pair<std::string, DestinationStats>> out;
    out.reserve(targets.size());
    for (auto& [name, d] : targets) out.emplace_back(name, d->stats());
    return out;
}

std::size_t RoutingDestination::target_count() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->targets.size();
}

DestinationStats RoutingDestination::forgotten_stats() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->forgotten;
}

std::uint64_t RoutingDestination::evicted_count() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->evicted;
}

std::vector<TargetStatus> RoutingDestination::target_status() const {
    std::lock_guard lock(impl_->mutex);
    std::vector<TargetStatus> out;
    out.reserve(impl_->targets.size());
    for (auto& t : impl_->targets)
        out.push_back({.target = t->name,
                       .health = t->breaker.health(),
                       .consecutive_failures = t->breaker.consecutive_failures(),
                       .in_flight = t->in_flight,
                       .last_error = t->last_error});
    return out;
}

void RoutingDestination::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters->set(std::move(handler));
}

void RoutingDestination::do_send(Message&& message, SendHandler handler) {
    Impl& impl = *impl_;
    std::string target;
    try {
        target = impl.config.route ? impl.config.route(message) : message.target;
    } catch (const std::exception& e) {
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           std::string("routing: the route function threw: ") + e.what(), {});
    } catch (...) {
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           "routing: the route function threw", {});
    }
    if (target.empty())
        return impl.refuse(std::move(message), std::move(handler), Errc::no_route,
                           impl.config.route
                               ? "routing: the route function named no target"
                               : "routing: the message has no target (Message::target)",
                           {});
    impl.forget_idle(target);
    error_code ec;
    std::string why;
    bool probe = false;
    Target* t = impl.find_or_make(target, ec, why, probe);
    if (!t)
        return impl.refuse(std::move(message), std::move(handler), ec, std::move(why),
                           std::move(target));
    // The user's handler keeps its executor and cancellation slot; the target's destination
    // completes through this wrapper, which settles the target's account first.
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto handler_executor = asio::get_associated_executor(handler, impl.executor);
    // A weak reference: the targets' destinations belong to the Impl, and a strong one in
    // their pending operations would keep all of it alive after the router is destroyed.
    // While the Impl lives, `t` does: a target is forgotten only with nothing in flight.
    auto settle = [weak = std::weak_ptr<Impl>(impl_), t, probe, h = std::move(handler)](
                      error_code result, Receipt receipt) mutable {
        if (auto self = weak.lock()) {
            std::lock_guard lock(self->mutex);
            self->ended(self, *t, probe, result, receipt);
        }
        std::move(h)(result, std::move(receipt));
    };
    try {
        t->destination->async_send(
            std::move(message),
            asio::bind_cancellation_slot(slot,
                                         asio::bind_executor(handler_executor, std::move(settle))));
    } catch (...) {
        // The target's destination (an application's) threw: the message never went out, and
        // the exception goes on to the caller as that destination's own would. Its place in
        // flight (and its turn as the breaker's probe) is given back, without a verdict:
        // kept, they would refuse the target's messages for good.
        std::lock_guard lock(impl.mutex);
        impl.ended(impl_, *t, probe, asio::error::operation_aborted, Receipt{});
        throw;
    }
}

void RoutingDestination::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    std::vector<Destination*> targets;
    {
        std::lock_guard lock(impl_->mutex);
        impl_->closing = true;
        for (auto& t : impl_->targets) targets.push_back(t->destination.get());
    }
    if (targets.empty()) {
        asio::post(impl_->executor, asio::append(std::move(handler), error_code{}));
        return;
    }
    // The targets complete on their own executors, maybe on several threads at once.
    struct Closing {
        std::mutex mutex;
        std::size_t left;
        error_code first_error;
        std::optional<CloseHandler> handler;
    };
    auto closing = std::make_shared<Closing>();
    closing->left = targets.size();
    closing->handler.emplace(std::move(handler));
    for (Destination* d : targets)
        d->async_close(deadline, [closing](error_code ec) {
            std::optional<CloseHandler> done;
            error_code result;
            {
                std::lock_guard lock(closing->mutex);
                if (ec && !closing->first_error) closing->first_error = ec;
                if (--closing->left != 0) return;
                done.emplace(std::move(*closing->handler));
                result = closing->first_error;
            }
            asio::dispatch(asio::append(std::move(*done), result));
        });
}

}  // namespace outbox
