// Outbox: a thread that owns the store (group commits of enqueues, claims, settlements) and
// a relay on a strand of the caller's executor that claims windows of due events, hands them
// to destinations made per target, and settles each outcome. The store is only ever touched
// on its thread; the relay's state only on the strand.
#include <outbox/error.hpp>
#include <outbox/outbox.hpp>

#include "core/dead_letter_slot.hpp"
#include "outbox/relay_policy.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

std::vector<std::chrono::seconds> default_retry_schedule() {
    using namespace std::chrono;
    return {seconds(5), minutes(5), minutes(30), hours(2), hours(5), hours(10), hours(10)};
}

namespace {

// A commit's bodies, at most (beyond its first event): a flush per 8 MiB still costs little,
// and it bounds what a full disk refuses at once and the room a commit needs.
constexpr std::size_t max_enqueue_batch_bytes = 8u << 20;

std::string describe_failure(const error_code& ec, const Receipt& r) {
    std::string text = ec.message();
    const Diagnostics& d = r.diagnostics;
    if (!d.code.empty() && d.message.find(d.code) == std::string::npos) text += " (" + d.code + ")";
    if (!d.message.empty()) text += ": " + d.message;
    return text;
}

error_code store_error_code(const StoreError& e) {
    return e.kind() == StoreError::Kind::full ? error_code(Errc::store_full)
                                              : error_code(Errc::store_error);
}

}  // namespace

struct Outbox::Impl : std::enable_shared_from_this<Outbox::Impl> {
    Impl(asio::any_io_executor ex, OutboxConfig cfg)
        : executor(ex),
          strand(asio::make_strand(ex)),
          config(std::move(cfg)),
          wake_timer(strand),
          settle_retry_timer(strand) {}

    asio::any_io_executor executor;
    asio::strand<asio::any_io_executor> strand;
    OutboxConfig config;
    // The bound per target in force (0: none).
    std::size_t per_target = config.max_in_flight_per_target.value_or(
        std::max<std::size_t>(1, config.max_in_flight / 2));
    std::string identity;  // the store's, for idempotency keys

    // ---- the store's thread: everything that touches config.store runs here ------------

    // The executor, counting as work while something is pending on the store's thread: an
    // event loop must not run out of work while an operation of ours is outstanding.
    asio::any_io_executor tracked() const {
        return asio::prefer(executor, asio::execution::outstanding_work.tracked);
    }

    struct PendingEnqueue {
        PendingEnqueue(NewEvent e, EnqueueHandler h) : event(std::move(e)), handler(std::move(h)) {}
        NewEvent event;
        EnqueueHandler handler;  // Boost 1.81: move-construct only, never move-assign
    };

    std::mutex mutex;
    std::condition_variable store_wakeup;
    std::deque<std::unique_ptr<PendingEnqueue>> enqueues;  // under mutex
    std::deque<std::function<void()>> jobs;                // under mutex
    bool accepting = true;                                 // under mutex
    // Counts as work on the executor while enqueues are waiting or being committed (one for
    // all of them, not one each).
    std::optional<asio::any_io_executor> enqueue_work;  // under mutex
    bool store_stopping = false;                        // under mutex
    SteadyClock::time_point full_until{};               // under mutex: waiting for room
    std::thread store_thread;

    OutboxStore& store() { return *config.store; }

    void post_job(std::function<void()> job) {
        {
            std::lock_guard lock(mutex);
            if (store_stopping) return;  // the relay is gone; the store keeps the events
            jobs.push_back([work = tracked(), job = std::move(job)] { job(); });
        }
        store_wakeup.notify_one();
    }

    // Runs `query` on the store's thread and hands its result, or the store's error, to
    // `handler` on the Outbox's executor.
    template <class Handler, class Query>
    void answer_from_store(Handler handler, Query query) {
        auto h = std::make_shared<Handler>(std::move(handler));  // jobs are copyable
        post_job([self = shared_from_this(), h, query = std::move(query)] {
            decltype(query(self->store())) out{};
            error_code ec;
            try {
                out = query(self->store());
            } catch (const StoreError& e) {
                self->config.logger.log(LogLevel::error, std::string("outbox: ") + e.what());
                ec = store_error_code(e);
            }
            asio::post(self->executor, asio::append(std::move(*h), ec, std::move(out)));
        });
    }

    void store_loop() {
        std::deque<std::function<void()>> todo;
        std::vector<std::unique_ptr<PendingEnqueue>> batch;
        for (;;) {
            {
                std::unique_lock lock(mutex);
                const auto ready = [&] {
                    return store_stopping || !jobs.empty() ||
                           (!enqueues.empty() && SteadyClock::now() >= full_until);
                };
                if (full_until > SteadyClock::now())
                    store_wakeup.wait_until(lock, full_until, ready);
                else
                    store_wakeup.wait(lock, ready);
                todo.swap(jobs);
                if (SteadyClock::now() >= full_until || store_stopping) {
                    std::size_t batch_bytes = 0;
                    while (!enqueues.empty() && batch.size() < config.max_enqueue_batch &&
                           batch_bytes < max_enqueue_batch_bytes) {
                        batch_bytes += enqueues.front()->event.message.body.size();
                        batch.push_back(std::move(enqueues.front()));
                        enqueues.pop_front();
                    }
                }
                if (store_stopping && todo.empty() && batch.empty() && enqueues.empty()) return;
            }
            for (auto& job : todo) job();
            todo.clear();
            if (!batch.empty()) commit(batch);
            batch.clear();
            std::optional<asio::any_io_executor> idle;  // released after the completions went out
            {
                std::lock_guard lock(mutex);
                if (enqueues.empty()) idle.swap(enqueue_work);
            }
        }
    }

    // One transaction for every enqueue waiting: durability costs a flush per batch.
    void commit(std::vector<std::unique_ptr<PendingEnqueue>>& batch) {
        bool stopping = false;
        {
            std::lock_guard lock(mutex);
            stopping = store_stopping;
        }
        if (config.max_store_bytes != 0) {
            std::uint64_t size = 0;
            std::string error;
            try {
                size = store().size_bytes();
            } catch (const StoreError& e) {
                error = e.what();
            }
            if (error.empty() && size >= config.max_store_bytes) {
                const std::string why = store().describe() + " holds " + std::to_string(size) +
                                        " bytes of events, its limit (max_store_bytes) is " +
                                        std::to_string(config.max_store_bytes);
                bool closed = false;
                {
                    std::lock_guard lock(mutex);
                    closed = !accepting;  // no relay will make room any more
                }
                if (config.fail_when_full || stopping || closed)
                    return fail_all(batch, Errc::store_full, why);
                // Wait for the relay to make room: back to the front, looked at again shortly.
                std::lock_guard lock(mutex);
                for (auto it = batch.rbegin(); it != batch.rend(); ++it)
                    enqueues.push_front(std::move(*it));
                full_until = SteadyClock::now() + std::chrono::milliseconds(100);
                return;
            }
        }
        std::vector<NewEvent> events;
        events.reserve(batch.size());
        for (auto& p : batch) events.push_back(std::move(p->event));
        std::vector<EventId> ids;
        try {
            store().enqueue(events, ids);
        } catch (const StoreError& e) {
            config.logger.log(LogLevel::error, std::string("outbox: enqueue failed: ") + e.what());
            return fail_all(batch, store_error_code(e), e.what());
        }
        enqueued += batch.size();
        ++commits;
        // One post for the whole batch; each handler then runs on its own executor.
        auto done =
            std::make_shared<std::vector<std::unique_ptr<PendingEnqueue>>>(std::move(batch));
        batch.clear();
        asio::post(executor, [done, ids = std::move(ids)] {
            for (std::size_t i = 0; i < done->size(); ++i)
                asio::dispatch(asio::append(std::move((*done)[i]->handler), error_code{},
                                            EnqueueResult{ids[i], {}}));
        });
        asio::post(strand, [self = shared_from_this()] { self->on_enqueued(); });
    }

    void fail_all(std::vector<std::unique_ptr<PendingEnqueue>>& batch, error_code ec,
                  const std::string& why) {
        refused += batch.size();
        for (auto& p : batch)
            asio::post(executor, asio::append(std::move(p->handler), ec, EnqueueResult{0, why}));
    }

    // ---- the relay, on the strand --------------------------------------------------------

    bool relaying = false;
    bool claiming = false;
    bool enqueued_while_claiming = false;
    bool closing = false;
    bool settling = false;
    bool delivering = false;          // handing a claimed window out: no new claim until it is done
    std::size_t in_flight_count = 0;  // claimed and not yet settled (or released)
    std::unordered_map<std::string, std::size_t> sending;  // per target, with its destination
    std::set<std::string> claimed_passing_over;            // the last claim's full targets
    std::optional<std::set<std::string>> came_up_empty;    // ... when it found nothing
    bool close_deadline_passed = false;
    asio::steady_timer close_timer{strand};
    std::atomic<bool> stopped{false};  // the destructor ran: no handler of ours does anything
    std::vector<EventOutcome> unsettled;
    std::unordered_map<EventId, error_code> dead_errors;  // for the dead letters' error codes
    asio::steady_timer wake_timer;
    asio::steady_timer settle_retry_timer;
    asio::steady_timer renew_timer{strand};  // leases of claims in flight (PostgreSQL)
    std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
    std::optional<CloseHandler> close_handler;
    std::size_t destinations_closing = 0;

    detail::DeadLetterSlot dead_letters;
    std::atomic<std::uint64_t> enqueued{0}, commits{0}, refused{0}, delivered{0}, retried{0},
        dead{0}, in_flight{0};

    void start_relay() {
        relaying = true;
        pump();
        renew_leases();
    }

    // Every poll_interval while something is in flight: the store extends what needs it.
    void renew_leases() {
        renew_timer.expires_after(config.poll_interval);
        renew_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec || self->stopped) return;  // while closing too: sends still run
            if (self->in_flight_count != 0)
                self->post_job([self] {
                    try {
                        self->store().renew_claims(std::chrono::system_clock::now());
                    } catch (const StoreError& e) {
                        self->config.logger.log(
                            LogLevel::warning, std::string("outbox: renewing claims: ") + e.what());
                    }
                });
            self->renew_leases();
        });
    }

    void on_enqueued() {
        came_up_empty.reset();  // something new may be due
        if (claiming)
            enqueued_while_claiming = true;
        else
            pump();
    }

    // The targets whose share is out (TargetBound::room 0): their due events are passed over.
    std::set<std::string> targets_without_room() const {
        std::set<std::string> full;
        if (per_target == 0) return full;
        TargetBound bound{per_target, sending};
        for (const auto& [target, n] : sending)
            if (bound.room(target) == 0) full.insert(target);
        return full;
    }

    void pump() {
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
        TargetBound bound{per_target, {}};
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
            asio::post(self->strand,
                       [self, events = std::move(events), next, error, limit]() mutable {
                           self->on_claimed(std::move(events), next, error, limit);
                       });
        });
    }

    void on_claimed(std::vector<StoredEvent> events, std::optional<SystemTime> next,
                    const std::string& error, std::size_t limit) {
        claiming = false;
        if (stopped) return;
        if (closing) return maybe_finish_close();  // the claims are released when it closes
        if (!error.empty()) {
            config.logger.log(LogLevel::error, "outbox: reading the backlog failed: " + error +
                                                   "; trying again in 1 s");
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
            when = std::min(when,
                            SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                                     std::max(wait, decltype(wait)::zero())));
        }
        wake_at(when);
    }

    void wake_at(SteadyClock::time_point when) {
        wake_timer.expires_at(when);
        wake_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec) return;
            self->came_up_empty.reset();
            self->pump();
        });
    }

    Destination* destination_for(const std::string& target, std::string& why) {
        if (auto it = destinations.find(target); it != destinations.end()) return it->second.get();
        std::unique_ptr<Destination> made;
        try {
            made = config.make_destination(target);
            if (!made) why = "make_destination returned no destination";
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (!made) return nullptr;
        Destination* d = made.get();
        destinations.emplace(target, std::move(made));
        return d;
    }

    void deliver(StoredEvent e) {
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
        Message m = std::move(e.message);
        m.idempotency_key = identity + "-" + std::to_string(e.id);
        ++sending[e.target];
        // A weak reference: the destination belongs to this Impl, and a strong one in its
        // handlers would keep both alive after the Outbox is gone.
        d->async_send(
            std::move(m),
            asio::bind_executor(strand, [weak = weak_from_this(), id = e.id,
                                         target = std::move(e.target), attempts = e.attempts,
                                         since = e.enqueued_at](error_code ec, Receipt r) mutable {
                if (auto self = weak.lock(); self && !self->stopped)
                    self->on_sent(id, std::move(target), attempts + 1, since, ec, r);
            }));
    }

    void on_sent(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                 error_code ec, const Receipt& r) {
        if (auto it = sending.find(target); it != sending.end() && --it->second == 0)
            sending.erase(it);
        if (!ec) {
            unsettled.push_back(
                {EventOutcome::Kind::delivered, id, attempt, {}, {}, std::move(target)});
        } else if (closing && ec == asio::error::operation_aborted) {
            // Cut off by close: not an attempt that failed; its claim is released at the end
            // and the next relay delivers it.
            --in_flight_count;
            --in_flight;
        } else {
            failed(id, std::move(target), attempt, since, ec, describe_failure(ec, r));
            return;
        }
        flush_settles();
        pump();
        maybe_finish_close();
    }

    // Attempt `attempt` of event `id` failed: retry on the schedule, or a dead letter.
    void failed(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                error_code ec, const std::string& error) {
        const bool retryable = is_retryable(ec) || ec == asio::error::operation_aborted;
        EventOutcome o = detail::after_failure(id, attempt, retryable, error, since,
                                               std::chrono::system_clock::now(),
                                               config.retry_schedule, config.max_age);
        o.target = std::move(target);
        if (o.kind == EventOutcome::Kind::dead) dead_errors[id] = ec;
        config.logger.log(o.kind == EventOutcome::Kind::dead ? LogLevel::warning : LogLevel::info,
                          "outbox: event " + std::to_string(id) +
                              (o.kind == EventOutcome::Kind::dead ? " is a dead letter: "
                                                                  : " failed, retrying: ") +
                              o.error);
        unsettled.push_back(std::move(o));
        flush_settles();
        pump();
        maybe_finish_close();
    }

    void flush_settles() {
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
            asio::post(self->strand, [self, batch, kept = std::move(kept),
                                      letters = std::move(letters), error]() mutable {
                self->on_settled(std::move(*batch), std::move(kept), std::move(letters), error);
            });
        });
    }

    void on_settled(std::vector<EventOutcome> batch, std::vector<EventOutcome> kept,
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
            if (config.on_settled) config.on_settled(o);
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
            config.logger.log(LogLevel::error, "outbox: recording outcomes failed: " + error +
                                                   "; trying again in 1 s");
            unsettled.insert(unsettled.begin(), std::make_move_iterator(kept.begin()),
                             std::make_move_iterator(kept.end()));
            settle_retry_timer.expires_after(std::chrono::seconds(1));
            settle_retry_timer.async_wait([self = shared_from_this()](error_code ec) {
                if (!ec) self->flush_settles();
            });
        } else {
            flush_settles();
        }
        pump();
        maybe_finish_close();
    }

    // ---- closing ---------------------------------------------------------------------------

    void close(std::chrono::milliseconds deadline, CloseHandler handler) {
        if (closing) {
            asio::post(executor, asio::append(std::move(handler),
                                              error_code(asio::error::operation_aborted)));
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

    void maybe_finish_close() {
        if (!close_handler) return;
        const bool drained = destinations_closing == 0 && in_flight_count == 0 && !claiming &&
                             !settling && unsettled.empty();
        if (!drained && !close_deadline_passed) return;
        auto handler = std::make_shared<CloseHandler>(std::move(*close_handler));
        close_handler.reset();
        settle_retry_timer.cancel();
        close_timer.cancel();
        renew_timer.cancel();
        // What is claimed and unsettled (a claim that came back while closing) is released:
        // the next relay delivers it.
        post_job([self = shared_from_this(), handler] {
            error_code ec;
            try {
                self->store().release_claims();
            } catch (const StoreError& e) {
                self->config.logger.log(LogLevel::error, std::string("outbox: ") + e.what());
                ec = Errc::store_error;
            }
            asio::post(self->executor, asio::append(std::move(*handler), ec));
        });
    }

    // The destructor's part: no waiting for deliveries; accepted enqueues are committed.
    void shutdown() {
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
        config.store.reset();
        // The destinations and timers belong to the strand.
        asio::dispatch(strand, [self = shared_from_this()] {
            self->closing = true;
            self->wake_timer.cancel();
            self->renew_timer.cancel();
            self->settle_retry_timer.cancel();
            self->close_timer.cancel();
            self->destinations.clear();  // each fails what it holds: those events stay stored
        });
    }
};

// ---- Outbox ------------------------------------------------------------------------------

Outbox::Outbox(asio::any_io_executor executor, OutboxConfig config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("Outbox: " + what);
    };
    require(config.store != nullptr, "no store (OutboxConfig::store)");
    require(!config.relay || static_cast<bool>(config.make_destination),
            "a relay needs make_destination");
    require(!config.retry_schedule.empty(), "retry_schedule is empty");
    require(config.max_in_flight >= 1 && config.claim_window >= 1 && config.max_enqueue_batch >= 1,
            "max_in_flight, claim_window and max_enqueue_batch must be at least 1");
    require(config.max_age.count() > 0, "max_age must be positive");
    auto impl = std::make_shared<Impl>(executor, std::move(config));
    impl->identity = impl->store().identity();
    if (impl->config.relay) {
        impl->store().lock_for_relay();  // throws StoreError naming the other relay
        impl->store().release_claims();
        // Called from a thread of the store's: only posts.
        impl->store().watch_arrivals([weak = std::weak_ptr<Impl>(impl)] {
            if (auto self = weak.lock()) asio::post(self->strand, [self] { self->on_enqueued(); });
        });
    }
    impl->store_thread = std::thread([raw = impl.get()] { raw->store_loop(); });
    if (impl->config.relay) asio::post(impl->strand, [impl] { impl->start_relay(); });
    impl_ = std::move(impl);
}

Outbox::~Outbox() {
    impl_->shutdown();
}

Outbox::executor_type Outbox::get_executor() const noexcept {
    return impl_->executor;
}

void Outbox::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters.set(std::move(handler));
}

OutboxStats Outbox::stats() const {
    const Impl& i = *impl_;
    return {i.enqueued.load(), i.commits.load(), i.refused.load(),  i.delivered.load(),
            i.retried.load(),  i.dead.load(),    i.in_flight.load()};
}

void Outbox::do_enqueue(std::string target, Message message, EnqueueHandler handler) {
    Impl& impl = *impl_;
    auto refuse = [&](error_code ec, std::string why) {
        ++impl.refused;
        asio::post(impl.executor,
                   asio::append(std::move(handler), ec, EnqueueResult{0, std::move(why)}));
    };
    if (target.empty()) return refuse(Errc::invalid_argument, "the event has no target");
    // No queue, topic or store's text column takes a NUL byte in these.
    for (const auto& [field, text] : {std::pair<const char*, const std::string*>{"target", &target},
                                      {"group_id", &message.group_id},
                                      {"deduplication_id", &message.deduplication_id}})
        if (text->find('\0') != std::string::npos)
            return refuse(Errc::invalid_argument,
                          std::string("the event's ") + field + " contains a NUL byte");
    if (impl.config.validate) {
        std::string why;
        try {
            why = impl.config.validate(target, message);
        } catch (const std::exception& e) {
            why = std::string("the validate function threw: ") + e.what();
        }
        if (!why.empty()) return refuse(Errc::invalid_message, std::move(why));
    }
    if (std::string why = impl.store().refusal(target, message); !why.empty())
        return refuse(Errc::invalid_message, std::move(why));
    message.target.clear();
    bool accepted = false, wake = false;
    {
        std::lock_guard lock(impl.mutex);
        if (impl.accepting) {
            // The store's thread looks at the queue again after each batch: it needs waking
            // only when the queue was empty.
            wake = impl.enqueues.empty();
            if (!impl.enqueue_work) impl.enqueue_work.emplace(impl.tracked());
            impl.enqueues.push_back(std::make_unique<Impl::PendingEnqueue>(
                NewEvent{std::move(target), std::move(message)}, std::move(handler)));
            accepted = true;
        }
    }
    if (accepted) {
        if (wake) impl.store_wakeup.notify_one();
        return;
    }
    refuse(asio::error::operation_aborted, "the outbox is closed");
}

void Outbox::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    asio::dispatch(impl_->strand, [impl = impl_, deadline, h = std::move(handler)]() mutable {
        impl->close(deadline, std::move(h));
    });
}

void Outbox::do_summarize(SummaryHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [](OutboxStore& store) { return store.summarize(); });
}

void Outbox::do_has_pending(FlagHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [](OutboxStore& store) { return store.has_pending(); });
}

void Outbox::do_dead_letters(std::string target, std::size_t limit, EventsHandler handler) {
    impl_->answer_from_store(std::move(handler),
                             [target = std::move(target), limit](OutboxStore& store) {
                                 return store.dead_letters(target, limit);
                             });
}

void Outbox::do_redrive(std::string target, CountHandler handler) {
    impl_->answer_from_store(
        std::move(handler), [impl = impl_, target = std::move(target)](OutboxStore& store) {
            const std::uint64_t n = store.redrive(target, std::chrono::system_clock::now());
            if (n > 0) asio::post(impl->strand, [impl] { impl->on_enqueued(); });
            return n;
        });
}

void Outbox::do_purge(std::string target, CountHandler handler) {
    impl_->answer_from_store(std::move(handler), [target = std::move(target)](OutboxStore& store) {
        return store.purge(target);
    });
}

}  // namespace outbox
