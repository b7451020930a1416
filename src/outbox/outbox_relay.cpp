// Outbox::Impl's relay, on the strand: claims, deliveries, settlements; and closing. Apart from
// the store's thread and the enqueue side (outbox.cpp).
#include "core/thrown_text.hpp"
#include "core/trace_context.hpp"
#include "outbox/outbox_impl.hpp"

#include "outbox/relay_policy.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>

namespace outbox {

namespace {

std::string describe_failure(const error_code& ec, const Diagnostics& d) {
    std::string text = ec.message();
    if (!d.code.empty() && d.message.find(d.code) == std::string::npos) text += " (" + d.code + ")";
    if (!d.message.empty()) text += ": " + d.message;
    return text;
}

}  // namespace

void Outbox::Impl::start_relay() {
    relaying = true;
    pump();
    renew_leases();
}

// Every poll_interval while something is in flight or a breaker is kept: the store extends
// what needs it (leases of claims; PostgreSQL's breaker rows, which readers trust while fresh).
void Outbox::Impl::renew_leases() {
    renew_timer.expires_after(config.poll_interval);
    renew_timer.async_wait([self = shared_from_this()](error_code ec) {
        // While closing too (sends still run), not after: a wait that had already ended when
        // close finished is not cancelled by it, and would renew forever.
        if (ec || self->stopped || self->close_finished) return;
        if (self->in_flight_count != 0 || !self->breakers.empty())
            self->post_job([self] {
                try {
                    self->store().renew_claims(std::chrono::system_clock::now());
                } catch (const StoreError& e) {
                    self->config.logger.log(LogLevel::warning,
                                            std::string("outbox: renewing claims: ") + e.what());
                }
            });
        self->renew_leases();
    });
}

void Outbox::Impl::on_enqueued() {
    came_up_empty.reset();  // something new may be due
    if (claiming)
        enqueued_while_claiming = true;
    else
        pump();
}

// The targets whose share is out (TargetBound::room 0) or whose breaker refuses: their due
// events are passed over.
std::set<std::string> Outbox::Impl::targets_without_room() const {
    std::set<std::string> full;
    for (const auto& [target, cap] : breaker_caps())
        if (cap == 0) full.insert(target);
    if (per_target == 0) return full;
    TargetBound bound{per_target, sending};
    for (const auto& [target, n] : sending)
        if (bound.room(target) == 0) full.insert(target);
    return full;
}

std::unordered_map<std::string, std::size_t> Outbox::Impl::breaker_caps() const {
    std::unordered_map<std::string, std::size_t> caps;
    const auto now = SteadyClock::now();
    for (const auto& [target, b] : breakers)
        if (b.breaker.open()) caps.emplace(target, b.breaker.refusing(now) ? 0 : 1);
    return caps;
}

void Outbox::Impl::pump() {
    if (stopped || !relaying || closing || claiming || delivering) return;
    const std::size_t room = config.max_in_flight - in_flight_count;
    if (room == 0) return;
    const std::size_t limit = std::min(config.claim_window, room);
    // A claim that passed over the same full targets found nothing: another would read
    // their due events again for nothing, until a share comes back, an event arrives or the
    // next wake.
    auto full = targets_without_room();
    if (came_up_empty && !full.empty() && *came_up_empty == full) {
        if (wake_timer.expiry() <= SteadyClock::now())  // the poll still comes
            wake_at(SteadyClock::now() + config.poll_interval);
        return;
    }
    claiming = true;
    enqueued_while_claiming = false;
    claimed_passing_over = std::move(full);
    TargetBound bound{per_target, {}, breaker_caps()};
    if (bound.per_target != 0) bound.out = sending;
    post_job([self = shared_from_this(), limit, bound = std::move(bound)] {
        std::vector<StoredEvent> events;
        std::optional<SystemTime> next;
        std::string error;
        try {
            events = self->store().claim(std::chrono::system_clock::now(), limit, bound);
        } catch (const StoreError& e) {
            error = e.what();
        }
        // Claimed events go out whatever happens here: when the next one is due is a hint.
        if (error.empty() && events.size() < limit) try {
                next = self->store().next_due();
            } catch (const StoreError&) {
            }
        asio::post(self->strand, [self, events = std::move(events), next, error, limit]() mutable {
            self->on_claimed(std::move(events), next, error, limit);
        });
    });
}

void Outbox::Impl::on_claimed(std::vector<StoredEvent> events, std::optional<SystemTime> next,
                              const std::string& error, std::size_t limit) {
    claiming = false;
    if (stopped) return;
    if (closing) return maybe_finish_close();  // the claims are released when it closes
    if (!error.empty()) {
        config.logger.log(LogLevel::error,
                          "outbox: reading the backlog failed: " + error + "; trying again in 1 s");
        return wake_at(SteadyClock::now() + std::chrono::seconds(1));
    }
    // Not when an event arrived meanwhile: this claim may not have seen it.
    if (events.empty() && !enqueued_while_claiming)
        came_up_empty = std::move(claimed_passing_over);
    else
        came_up_empty.reset();
    delivering = true;
    for (auto& e : events) deliver(std::move(e));
    delivering = false;
    if (events.size() == limit || enqueued_while_claiming) return pump();
    // Nothing more is due: wake when the next event is, or to look for events stored by
    // other processes. A next event that is due already but was not claimed waits behind
    // its group's head: the head's settlement wakes the relay, the poll is the fallback.
    auto when = SteadyClock::now() + config.poll_interval;
    if (next && (!events.empty() || *next > std::chrono::system_clock::now())) {
        const auto wait = *next - std::chrono::system_clock::now();
        when =
            std::min(when, SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                    std::max(wait, decltype(wait)::zero())));
    }
    wake_at(when);
}

void Outbox::Impl::wake_at(SteadyClock::time_point when) {
    wake_timer.expires_at(when);
    wake_timer.async_wait([self = shared_from_this()](error_code ec) {
        if (ec) return;
        self->came_up_empty.reset();
        self->pump();
    });
}

Destination* Outbox::Impl::destination_for(const std::string& target, std::string& why) {
    if (auto it = destinations.find(target); it != destinations.end()) return it->second.get();
    std::unique_ptr<Destination> made;
    try {
        made = config.make_destination(target);
        if (!made) why = "make_destination returned no destination";
    } catch (...) {
        why = detail::thrown_text();
    }
    if (!made) return nullptr;
    Destination* d = made.get();
    destinations.emplace(target, std::move(made));
    return d;
}

void Outbox::Impl::deliver(StoredEvent e) {
    ++in_flight_count;
    ++in_flight;
    if (stopped) return;
    if (e.damaged)
        return failed(e.id, e.target, e.attempts + 1, e.enqueued_at, Errc::invalid_message,
                      e.last_error);
    std::string why;
    Destination* d = destination_for(e.target, why);
    if (!d)
        return failed(e.id, e.target, e.attempts + 1, e.enqueued_at, Errc::no_route,
                      "no destination for \"" + e.target + "\": " + why);
    // The claim took an open breaker's target only for its probe; an event claimed before its
    // breaker opened goes out like any other (at most the target's share of them).
    bool probe = false;
    if (auto b = breakers.find(e.target); b != breakers.end() && b->second.breaker.open())
        probe =
            b->second.breaker.admit(SteadyClock::now()) == detail::CircuitBreaker::Admission::probe;
    Message m = std::move(e.message);
    detail::restore_aws_trace_header(m);
    m.idempotency_key = identity + "-" + std::to_string(e.id);
    auto& out_to_target = *sending.try_emplace(e.target).first;
    ++out_to_target.second;
    try {
        send(*d, std::move(m), std::move(e), probe);
    } catch (...) {
        // An application's destination that throws: an attempt that failed, retried on the
        // schedule. Left unanswered, the event would stay out and the relay stop claiming.
        Diagnostics threw;
        threw.message = "the destination threw: " + detail::thrown_text();
        on_sent(e.id, out_to_target.first, e.attempts + 1, e.enqueued_at, probe,
                make_error_code(Errc::target_unavailable), threw);
    }
}

void Outbox::Impl::send(Destination& d, Message&& m, StoredEvent&& e, bool probe) {
    // A weak reference: the destination belongs to this Impl, and a strong one in its
    // handlers would keep both alive after the Outbox is gone. Not bound to the strand: the
    // destination calls it where it completes sends, and only a failure's diagnostics go on
    // to the strand. Every hop moves what it carries, and a Receipt is nine strings and its
    // diagnostics: bound, it moved seven times per event.
    d.async_send(std::move(m), [weak = weak_from_this(), strand = strand, id = e.id,
                                target = std::move(e.target), attempts = e.attempts,
                                since = e.enqueued_at, probe](error_code ec, Receipt r) mutable {
        std::unique_ptr<Diagnostics> failure;
        if (ec) failure = std::make_unique<Diagnostics>(std::move(r.diagnostics));
        asio::dispatch(strand, [weak = std::move(weak), id, target = std::move(target), attempts,
                                since, probe, ec, failure = std::move(failure)]() mutable {
            if (auto self = weak.lock(); self && !self->stopped)
                self->on_sent(id, std::move(target), attempts + 1, since, probe, ec,
                              failure ? std::move(*failure) : Diagnostics{});
        });
    });
}

void Outbox::Impl::judge_target(const std::string& target, bool probe, const error_code& ec,
                                const Diagnostics& why) {
    if (config.breaker.failures_to_open == 0) return;
    auto it = breakers.find(target);
    if (!ec || !detail::counts_against_target(ec, why)) {
        if (it == breakers.end()) return;
        std::optional<TargetHealth> change;
        if (!ec)
            change = it->second.breaker.succeeded(probe);
        else
            it->second.breaker.ended_without_verdict(probe);
        if (change) {
            TargetHealthEvent event;
            event.target = target;
            event.health = *change;
            event.since = std::chrono::system_clock::now();
            keep_breaker(target, it->second);
            tell_target_health(event);
        }
        // Healthy again: forgotten, so a relay holds breakers only for targets failing now.
        if (!ec && !it->second.breaker.open() && it->second.breaker.consecutive_failures() == 0)
            breakers.erase(it);
        return;
    }
    if (it == breakers.end()) it = breakers.emplace(target, TargetBreaker(config.breaker)).first;
    TargetBreaker& b = it->second;
    if (b.breaker.consecutive_failures() == 0) b.failing_since = std::chrono::system_clock::now();
    b.last_error = ec;
    b.last_diagnostics = why;
    const auto change = b.breaker.failed(SteadyClock::now(), probe);
    if (change || (probe && b.breaker.health() != TargetHealth::healthy)) keep_breaker(target, b);
    if (!change) return;
    if (*change == TargetHealth::open)
        config.logger.log(LogLevel::warning,
                          "outbox: target \"" + target + "\" failed " +
                              std::to_string(b.breaker.consecutive_failures()) +
                              " times in a row; its events wait in the store until a probe "
                              "is delivered");
    if (!config.on_target_health) return;
    TargetHealthEvent event;
    event.target = target;
    event.health = *change;
    event.consecutive_failures = b.breaker.consecutive_failures();
    event.last_error = b.last_error;
    event.last_diagnostics = b.last_diagnostics;
    event.since = b.failing_since;
    tell_target_health(event);
}

// The store keeps the breaker as reported now, for `outbox inspect` in another process.
void Outbox::Impl::keep_breaker(const std::string& target, const TargetBreaker& b) {
    if (closing && !close_handler) return;  // closed: forgotten already, kept no more
    TargetBreakerState state;
    state.target = target;
    state.health = b.breaker.health();
    state.consecutive_failures = b.breaker.consecutive_failures();
    state.failing_since = b.failing_since;
    if (b.breaker.open())
        state.next_probe_at =
            std::chrono::system_clock::now() +
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::max(b.breaker.next_probe_at() - SteadyClock::now(), SteadyClock::duration{}));
    if (b.last_error) state.last_error = describe_failure(b.last_error, b.last_diagnostics);
    post_job([self = shared_from_this(), state = std::move(state)] {
        try {
            self->store().save_breaker(state);
        } catch (const StoreError& e) {
            self->config.logger.log(LogLevel::warning,
                                    std::string("outbox: keeping a breaker: ") + e.what());
        }
    });
}

void Outbox::Impl::tell_target_health(const TargetHealthEvent& event) {
    if (!config.on_target_health) return;
    try {
        config.on_target_health(event);
    } catch (...) {  // the delivery's outcome must still be recorded
        config.logger.log(LogLevel::error,
                          "outbox: on_target_health threw: " + detail::thrown_text());
    }
}

// An exception from the application's callback must not cut the accounting of the batch
// short: the events after it would never be counted, their dead letters never handed over.
void Outbox::Impl::tell_settled(const EventOutcome& outcome) {
    if (!config.on_settled) return;
    try {
        config.on_settled(outcome);
    } catch (...) {
        config.logger.log(LogLevel::error, "outbox: on_settled threw: " + detail::thrown_text());
    }
}

void Outbox::Impl::on_sent(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                           bool probe, error_code ec, const Diagnostics& why) {
    if (auto it = sending.find(target); it != sending.end() && --it->second == 0) sending.erase(it);
    if (!(closing && ec == asio::error::operation_aborted)) judge_target(target, probe, ec, why);
    if (!ec) {
        unsettled.push_back(
            {EventOutcome::Kind::delivered, id, attempt, {}, {}, std::move(target)});
    } else if (closing && ec == asio::error::operation_aborted) {
        // Cut off by close: not an attempt that failed; its claim is released at the end
        // and the next relay delivers it.
        --in_flight_count;
        --in_flight;
    } else {
        failed(id, std::move(target), attempt, since, ec, describe_failure(ec, why));
        return;
    }
    flush_settles();
    pump();
    maybe_finish_close();
}

// Attempt `attempt` of event `id` failed: retry on the schedule, or a dead letter.
void Outbox::Impl::failed(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                          error_code ec, const std::string& error) {
    EventOutcome o = detail::after_failure(id, attempt, detail::relay_retries(ec), error, since,
                                           std::chrono::system_clock::now(), config.retry_schedule,
                                           config.max_age);
    o.target = std::move(target);
    if (o.kind == EventOutcome::Kind::dead) dead_errors[id] = ec;
    config.logger.log(
        o.kind == EventOutcome::Kind::dead ? LogLevel::warning : LogLevel::info,
        "outbox: event " + std::to_string(id) +
            (o.kind == EventOutcome::Kind::dead ? " is a dead letter: " : " failed, retrying: ") +
            o.error);
    unsettled.push_back(std::move(o));
    flush_settles();
    pump();
    maybe_finish_close();
}

void Outbox::Impl::flush_settles() {
    if (stopped || settling || unsettled.empty()) return;
    settling = true;
    auto batch = std::make_shared<std::vector<EventOutcome>>(std::move(unsettled));
    unsettled.clear();
    const bool want_letters = dead_letters.get() != nullptr;
    post_job([self = shared_from_this(), batch, want_letters] {
        std::string error;
        std::vector<EventOutcome> kept;  // not recorded: tried again later
        try {
            self->store().settle(*batch);
        } catch (const StoreError& e) {
            // Deliveries alone, so a full store still gets the room they free; the rest
            // waits for the next try.
            error = e.what();
            std::vector<EventOutcome> deliveries;
            for (auto& o : *batch)
                (o.kind == EventOutcome::Kind::delivered ? deliveries : kept)
                    .push_back(std::move(o));
            try {
                self->store().settle(deliveries);
            } catch (const StoreError&) {
                kept.insert(kept.end(), std::make_move_iterator(deliveries.begin()),
                            std::make_move_iterator(deliveries.end()));
                deliveries.clear();
            }
            *batch = std::move(deliveries);
        }
        std::vector<StoredEvent> letters;
        if (want_letters)
            for (const auto& o : *batch)
                if (o.kind == EventOutcome::Kind::dead) try {
                        if (auto e = self->store().find(o.id)) letters.push_back(std::move(*e));
                    } catch (const StoreError&) {
                    }
        asio::post(self->strand, [self, batch, kept = std::move(kept), letters = std::move(letters),
                                  error]() mutable {
            self->on_settled(std::move(*batch), std::move(kept), std::move(letters), error);
        });
    });
}

void Outbox::Impl::on_settled(std::vector<EventOutcome> batch, std::vector<EventOutcome> kept,
                              std::vector<StoredEvent> letters, const std::string& error) {
    settling = false;
    if (stopped) return;
    in_flight_count -= batch.size();
    in_flight -= batch.size();
    if (came_up_empty) {  // a target with room settled: its group's next may be due
        const auto full = targets_without_room();
        for (const auto& o : batch)
            if (!full.count(o.target)) {
                came_up_empty.reset();
                break;
            }
    }
    for (const auto& o : batch) {
        tell_settled(o);
        switch (o.kind) {
            case EventOutcome::Kind::delivered:
                ++delivered;
                break;
            case EventOutcome::Kind::retry:
                ++retried;
                break;
            case EventOutcome::Kind::dead:
                ++dead;
                break;
        }
    }
    const auto handler = dead_letters.get();
    for (auto& e : letters) {
        DeadLetter letter;
        letter.error =
            dead_errors.count(e.id) ? dead_errors[e.id] : error_code(Errc::service_error);
        letter.receipt.attempts = e.attempts;
        letter.receipt.diagnostics.message = e.last_error;
        letter.target = e.target;
        letter.message = std::move(e.message);
        detail::DeadLetterSlot::deliver(handler, std::move(letter), config.logger);
    }
    for (const auto& o : batch)
        if (o.kind == EventOutcome::Kind::dead) dead_errors.erase(o.id);
    if (!error.empty()) {
        // Nothing is lost: those events stay claimed (and count against max_in_flight)
        // until their outcomes are recorded.
        config.logger.log(LogLevel::error,
                          "outbox: recording outcomes failed: " + error + "; trying again in 1 s");
        unsettled.insert(unsettled.begin(), std::make_move_iterator(kept.begin()),
                         std::make_move_iterator(kept.end()));
        // Once closed, not again: those claims are released, the next relay delivers them.
        if (!close_finished) {
            settle_retry_timer.expires_after(std::chrono::seconds(1));
            settle_retry_timer.async_wait([self = shared_from_this()](error_code ec) {
                if (!ec && !self->close_finished) self->flush_settles();
            });
        }
    } else {
        flush_settles();
    }
    pump();
    maybe_finish_close();
}

// ---- closing -----------------------------------------------------------------------------

void Outbox::Impl::close(std::chrono::milliseconds deadline, CloseHandler handler) {
    if (closing) {
        asio::post(executor,
                   asio::append(std::move(handler), error_code(asio::error::operation_aborted)));
        return;
    }
    closing = true;
    close_handler.emplace(std::move(handler));
    {
        std::lock_guard lock(mutex);
        accepting = false;
    }
    wake_timer.cancel();
    // Past the deadline (and a little for the destinations to report), close completes
    // whatever is still unsettled: those claims are released, the next relay delivers them.
    close_timer.expires_after(deadline + std::chrono::seconds(1));
    close_timer.async_wait([self = shared_from_this()](error_code ec) {
        if (ec) return;
        self->close_deadline_passed = true;
        self->maybe_finish_close();
    });
    // Destinations deliver what they hold within the deadline and fail the rest.
    destinations_closing = destinations.size();
    for (auto& [target, d] : destinations)
        d->async_close(deadline,
                       asio::bind_executor(strand, [self = shared_from_this()](error_code) {
                           --self->destinations_closing;
                           self->maybe_finish_close();
                       }));
    maybe_finish_close();
}

void Outbox::Impl::maybe_finish_close() {
    if (!close_handler) return;
    const bool drained = destinations_closing == 0 && in_flight_count == 0 && !claiming &&
                         !settling && unsettled.empty();
    if (!drained && !close_deadline_passed) return;
    // Answered by the job, or with operation_aborted when the job never runs (an Outbox
    // destroyed meanwhile drops its jobs).
    struct CloseAnswer {
        CloseHandler handler;
        asio::any_io_executor executor;
        bool answered = false;
        void answer(error_code ec) {
            answered = true;
            asio::post(executor, asio::append(std::move(handler), ec));
        }
        ~CloseAnswer() {
            if (!answered) answer(asio::error::operation_aborted);
        }
    };
    auto answer = std::make_shared<CloseAnswer>(std::move(*close_handler), executor);
    close_handler.reset();
    close_finished = true;
    settle_retry_timer.cancel();
    close_timer.cancel();
    renew_timer.cancel();
    // What is claimed and unsettled (a claim that came back while closing) is released:
    // the next relay delivers it.
    post_job([self = shared_from_this(), answer] {
        error_code ec;
        try {
            self->store().release_claims();
        } catch (const StoreError& e) {
            self->config.logger.log(LogLevel::error, std::string("outbox: ") + e.what());
            ec = Errc::store_error;
        }
        if (self->config.relay) self->forget_breakers();
        answer->answer(ec);
    });
}

// The destructor's part: no waiting for deliveries; accepted enqueues are committed.
void Outbox::Impl::shutdown() {
    stopped = true;  // handlers still queued on the strand do nothing from here on
    {
        std::lock_guard lock(mutex);
        accepting = false;
        store_stopping = true;
    }
    store_wakeup.notify_all();
    if (store_thread.joinable()) store_thread.join();
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard lock(mutex);
        dropped.swap(jobs);  // they hold references to this Impl
    }
    dropped.clear();
    // Nothing touches the store from here on (jobs are dropped): close it now, so its file
    // and the relay lock are free for the next Outbox at once.
    guarded_store.reset();
    config.store.reset();
    // The destinations and timers belong to the strand.
    asio::dispatch(strand, [self = shared_from_this()] {
        self->closing = true;
        self->wake_timer.cancel();
        self->renew_timer.cancel();
        self->settle_retry_timer.cancel();
        self->close_timer.cancel();
        self->destinations.clear();  // each fails what it holds: those events stay stored
        // A close still waiting for its deliveries ends here, as they did.
        if (self->close_handler) {
            asio::post(self->executor, asio::append(std::move(*self->close_handler),
                                                    error_code(asio::error::operation_aborted)));
            self->close_handler.reset();
        }
    });
}

}  // namespace outbox
