// The durable outbox: an event is first made durable in a store, then a relay delivers it
// through the destination its target names, and only a delivery (or a dead letter) takes it
// out of the backlog. Crashes, deploys and customer outages of hours lose nothing. See
// docs/outbox.md.
#pragma once

#include <outbox/dead_letter.hpp>
#include <outbox/destination.hpp>
#include <outbox/logging.hpp>
#include <outbox/outbox_store.hpp>
#include <outbox/target_health.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace outbox {

/// Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then every 10 h.
std::vector<std::chrono::seconds> default_retry_schedule();
/// The longest max_age and retry step an Outbox takes: about a century.
inline constexpr std::chrono::seconds longest_retry_wait = std::chrono::hours(24 * 36500);

struct OutboxConfig {
    /// Required: where events are kept (open_sqlite_store(...)).
    OutboxStorePtr store{};
    /// Makes the destination for a target the first time the relay needs it, as
    /// RoutingDestination's make_destination does; credentials stay in the application. A
    /// factory that throws or returns null makes that event a dead letter with the reason.
    /// Give its destinations short retries of their own (a few attempts, a deadline of a
    /// minute): the outbox retries on `retry_schedule`. Required when `relay` is on.
    std::function<std::unique_ptr<Destination>(const std::string& target)> make_destination{};
    /// Checks an event before it is stored (empty string: fine; else why it can never be
    /// delivered): async_enqueue then fails with Errc::invalid_message instead of storing a
    /// future dead letter. Empty: every event with a target is stored.
    std::function<std::string(const std::string& target, const Message& message)> validate{};
    /// false: this Outbox only enqueues (another process relays the store).
    bool relay = true;
    /// After the n-th failed attempt the event waits retry_schedule[n-1] (the last entry
    /// repeats). Retryable failures only (is_retryable); others make a dead letter at once.
    std::vector<std::chrono::seconds> retry_schedule = default_retry_schedule();
    /// An event still failing this long after it was stored (or redriven) becomes a dead letter.
    /// At most longest_retry_wait, as each step of retry_schedule (later times would overflow
    /// the clock).
    std::chrono::seconds max_age{std::chrono::hours(72)};
    /// When the events take this many bytes (OutboxStore::size_bytes), new ones wait for room
    /// (`fail_when_full` false) or fail with Errc::store_full. 0: no limit.
    std::uint64_t max_store_bytes = 0;
    bool fail_when_full = false;
    /// Events handed to destinations and not yet settled, at most.
    std::size_t max_in_flight = 1024;
    /// Events of one target handed to its destination and not yet back, at most: a target
    /// whose requests hang (rather than fail) holds this many of max_in_flight, not all, and
    /// the other targets' events go on. Once a target reaches it, its events are claimed again
    /// when half are back. Unset: half of max_in_flight (at least 1). 0: no bound.
    std::optional<std::size_t> max_in_flight_per_target{};
    /// Each target's circuit breaker (see target_health.hpp): after failures_to_open
    /// consecutive failed deliveries to a target, the relay claims none of its events — they
    /// wait in the store, no request made and no attempt counted — until open_for has passed;
    /// then one event goes as a probe, and its delivery closes the breaker. (Events claimed
    /// before it opened still go: at most the target's share.) An event past
    /// max_age becomes a dead letter when it is next tried, so not while it waits.
    /// Off by default (failures_to_open 0): an open breaker keeps events pending that would
    /// otherwise fail on their own schedule, so turning one on is the application's choice.
    /// While the relay runs the store keeps its breakers (OutboxStore::save_breaker), for
    /// `outbox inspect` and metrics in other processes.
    CircuitBreakerPolicy breaker{.failures_to_open = 0};
    /// Told when a target becomes degraded, open, disabled, or healthy again, in order, on the
    /// Outbox's strand. It must not block.
    TargetHealthHandler on_target_health{};
    /// Events read from the store at a time: memory stays flat whatever the backlog.
    std::size_t claim_window = 256;
    /// Events stored in one transaction, at most (concurrent enqueues share a commit); a
    /// transaction also stops at 8 MiB of bodies.
    std::size_t max_enqueue_batch = 4096;
    /// How often an idle relay looks for events other processes stored.
    std::chrono::milliseconds poll_interval{1000};
    /// Called with every outcome once the store has recorded it (delivered, retry, dead), on
    /// the Outbox's strand: a report, a metric. It must not block. An exception it throws is
    /// logged at error level and changes nothing else (so is one from on_target_health).
    std::function<void(const EventOutcome&)> on_settled{};
    Logger logger{};
};

/// What async_enqueue stored.
struct EnqueueResult {
    EventId id = 0;
    std::string error{};  // on failure: what the store said
};

/// Counters since the Outbox was made; cheap, from any thread.
struct OutboxStats {
    std::uint64_t enqueued = 0;  // stored and durable
    std::uint64_t commits = 0;   // enqueue transactions (enqueued / commits: the group size)
    std::uint64_t refused = 0;   // enqueues that failed
    std::uint64_t delivered = 0;
    std::uint64_t retried = 0;    // attempts that failed and were rescheduled
    std::uint64_t dead = 0;       // events that became dead letters
    std::uint64_t in_flight = 0;  // handed to destinations, not yet settled
};

class Outbox {
  public:
    /// Throws std::invalid_argument for a configuration that cannot work (no store, a relay
    /// without make_destination, an empty retry schedule) and StoreError when the relay lock
    /// is held by another relay of the store.
    Outbox(boost::asio::any_io_executor executor, OutboxConfig config);
    /// Stops at once: events in flight stay in the store and are delivered again by the next
    /// relay (at least once). Enqueues already accepted are committed first. Blocks until the
    /// store's thread has finished.
    ~Outbox();
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    using executor_type = boost::asio::any_io_executor;
    executor_type get_executor() const noexcept;

    using EnqueueHandler =
        boost::asio::any_completion_handler<void(boost::system::error_code, EnqueueResult)>;
    using CountHandler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::uint64_t)>;
    using SummaryHandler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                    std::vector<TargetSummary>)>;
    using EventsHandler = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                                   std::vector<StoredEvent>)>;
    using CloseHandler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using FlagHandler = boost::asio::any_completion_handler<void(boost::system::error_code, bool)>;

    /// Stores the event for `target` (a queue URL, a kafka:// URL, the application's own id:
    /// whatever make_destination understands). Completion: void(error_code, EnqueueResult)
    /// once it is durable — concurrent enqueues share one commit — on the handler's executor,
    /// never inside this call. Safe from any thread. Errors: Errc::invalid_argument (no
    /// target), Errc::invalid_message (refused by `validate`), Errc::store_full,
    /// Errc::store_error (EnqueueResult::error says why), operation_aborted (closed).
    template <class CompletionToken>
    auto async_enqueue(std::string target, Message message, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, EnqueueResult)>(
            [this](auto handler, std::string t, Message m) {
                do_enqueue(std::move(t), std::move(m), EnqueueHandler(std::move(handler)));
            },
            token, std::move(target), std::move(message));
    }

    /// Stops the relay: no new deliveries start; those in flight get `deadline` to finish
    /// (their destinations are closed with it), then what is unsettled stays in the store for
    /// the next relay. Later enqueues fail with operation_aborted. Completion: void(error_code);
    /// operation_aborted when the Outbox is destroyed before the close finishes.
    template <class CompletionToken>
    auto async_close(std::chrono::milliseconds deadline, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            [this, deadline](auto handler) {
                do_close(deadline, CloseHandler(std::move(handler)));
            },
            token);
    }

    /// Per target: pending, retrying and dead counts, the oldest pending event, the last error.
    template <class CompletionToken>
    auto async_summarize(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code,
                                                                 std::vector<TargetSummary>)>(
            [this](auto handler) { do_summarize(SummaryHandler(std::move(handler))); }, token);
    }

    /// Whether any event is pending (stored, not yet delivered or dead): cheap, for a relay
    /// that runs until its store is empty. Completion: void(error_code, bool).
    template <class CompletionToken>
    auto async_has_pending(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, bool)>(
            [this](auto handler) { do_has_pending(FlagHandler(std::move(handler))); }, token);
    }

    /// Dead letters of `target` (every target when empty), oldest first, at most `limit`.
    template <class CompletionToken>
    auto async_dead_letters(std::string target, std::size_t limit, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code,
                                                                 std::vector<StoredEvent>)>(
            [this, limit](auto handler, std::string t) {
                do_dead_letters(std::move(t), limit, EventsHandler(std::move(handler)));
            },
            token, std::move(target));
    }

    /// Dead letters of `target` (every target when empty) back to pending, due now; the count.
    template <class CompletionToken>
    auto async_redrive(std::string target, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, std::uint64_t)>(
            [this](auto handler, std::string t) {
                do_redrive(std::move(t), CountHandler(std::move(handler)));
            },
            token, std::move(target));
    }

    /// Removes every event of `target`, pending or dead; the count.
    template <class CompletionToken>
    auto async_purge(std::string target, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, std::uint64_t)>(
            [this](auto handler, std::string t) {
                do_purge(std::move(t), CountHandler(std::move(handler)));
            },
            token, std::move(target));
    }

    /// Every event that becomes a dead letter is handed to `handler` (read back from the
    /// store, with its last error), on the Outbox's executor. Callable from any thread.
    void set_dead_letter_handler(DeadLetterHandler handler);

    OutboxStats stats() const;

  private:
    struct Impl;
    void do_enqueue(std::string target, Message message, EnqueueHandler handler);
    void do_close(std::chrono::milliseconds deadline, CloseHandler handler);
    void do_summarize(SummaryHandler handler);
    void do_has_pending(FlagHandler handler);
    void do_dead_letters(std::string target, std::size_t limit, EventsHandler handler);
    void do_redrive(std::string target, CountHandler handler);
    void do_purge(std::string target, CountHandler handler);
    std::shared_ptr<Impl> impl_;
};

}  // namespace outbox
