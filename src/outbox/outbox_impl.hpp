// Outbox::Impl, private to the library: the store's thread and the enqueue side are defined in
// outbox.cpp, the relay on the strand and closing in outbox_relay.cpp.
#pragma once

#include <outbox/error.hpp>
#include <outbox/outbox.hpp>

#include "core/circuit_breaker.hpp"
#include "core/dead_letter_slot.hpp"
#include "outbox/guarded_store.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

namespace detail {

inline error_code store_error_code(const StoreError& e) {
    return e.kind() == StoreError::Kind::full ? error_code(Errc::store_full)
                                              : error_code(Errc::store_error);
}

}  // namespace detail

struct Outbox::Impl : std::enable_shared_from_this<Outbox::Impl> {
    Impl(asio::any_io_executor ex, OutboxConfig cfg);

    asio::any_io_executor executor;
    asio::any_io_executor strand;  // detail::make_strand_executor says why not asio::strand<...>
    OutboxConfig config;
    // The bound per target in force (0: none).
    std::size_t per_target = config.max_in_flight_per_target.value_or(
        std::max<std::size_t>(1, config.max_in_flight / 2));
    std::string identity;  // the store's, for idempotency keys

    // ---- the store's thread: everything that touches config.store runs here ------------

    asio::any_io_executor tracked() const;

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

    // The store as the Outbox calls it: anything it throws is a StoreError.
    std::optional<detail::GuardedStore> guarded_store;
    OutboxStore& store();
    void post_job(std::function<void()> job);

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
                ec = detail::store_error_code(e);
            }
            asio::post(self->executor, asio::append(std::move(*h), ec, std::move(out)));
        });
    }

    void store_loop();
    void commit(std::vector<std::unique_ptr<PendingEnqueue>>& batch);
    void fail_all(std::vector<std::unique_ptr<PendingEnqueue>>& batch, error_code ec,
                  const std::string& why);

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
    bool close_finished = false;  // its handler is on its way: no timer of ours re-arms
    asio::steady_timer close_timer{strand};
    std::atomic<bool> stopped{false};  // the destructor ran: no handler of ours does anything
    std::vector<EventOutcome> unsettled;
    std::unordered_map<EventId, error_code> dead_errors;  // for the dead letters' error codes
    asio::steady_timer wake_timer;
    asio::steady_timer settle_retry_timer;
    asio::steady_timer renew_timer{strand};  // leases of claims in flight (PostgreSQL)
    std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
    // Targets that have failed since the relay started: their breakers (on the strand).
    struct TargetBreaker {
        explicit TargetBreaker(const CircuitBreakerPolicy& p) : breaker(p) {}
        detail::CircuitBreaker breaker;
        error_code last_error;
        Diagnostics last_diagnostics;
        SystemTime failing_since{};
    };
    std::unordered_map<std::string, TargetBreaker> breakers;
    std::optional<CloseHandler> close_handler;
    std::size_t destinations_closing = 0;

    detail::DeadLetterSlot dead_letters;
    std::atomic<std::uint64_t> enqueued{0}, commits{0}, refused{0}, delivered{0}, retried{0},
        dead{0}, in_flight{0};

    void start_relay();
    void renew_leases();
    void on_enqueued();
    std::set<std::string> targets_without_room() const;
    void pump();
    void on_claimed(std::vector<StoredEvent> events, std::optional<SystemTime> next,
                    const std::string& error, std::size_t limit);
    void wake_at(SteadyClock::time_point when);
    Destination* destination_for(const std::string& target, std::string& why);
    void deliver(StoredEvent e);
    void send(Destination& d, Message&& m, StoredEvent&& e, bool probe);
    void on_sent(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                 bool probe, error_code ec, const Diagnostics& why);
    // A delivery's verdict on its target's breaker; health changes go to on_target_health.
    void judge_target(const std::string& target, bool probe, const error_code& ec,
                      const Diagnostics& why);
    void tell_target_health(const TargetHealthEvent& event);
    void tell_settled(const EventOutcome& outcome);
    // The claim's caps for open breakers: 0 while refusing, 1 when a probe is due.
    std::unordered_map<std::string, std::size_t> breaker_caps() const;
    void keep_breaker(const std::string& target, const TargetBreaker& b);
    void forget_breakers();  // on the store's thread
    void failed(EventId id, std::string target, std::uint32_t attempt, SystemTime since,
                error_code ec, const std::string& error);
    void flush_settles();
    void on_settled(std::vector<EventOutcome> batch, std::vector<EventOutcome> kept,
                    std::vector<StoredEvent> letters, const std::string& error);

    // ---- closing ---------------------------------------------------------------------------

    void close(std::chrono::milliseconds deadline, CloseHandler handler);
    void maybe_finish_close();
    void shutdown();
};

}  // namespace outbox
