// Where the durable outbox keeps its events: the interface of a store. outbox ships the
// embedded SQLite store (sqlite_store.hpp) and a PostgreSQL one (postgresql_store.hpp). Calls are
// synchronous and come from one thread at a time: an Outbox makes them on a thread of its
// own, never on the caller's executor. See docs/outbox.md.
#pragma once

#include <outbox/message.hpp>
#include <outbox/target_health.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace outbox {

/// A stored event's id: unique in its store, increasing in the order events were stored.
using EventId = std::int64_t;
using SystemTime = std::chrono::system_clock::time_point;

/// An event on its way into the store.
struct NewEvent {
    std::string target{};
    Message message{};  // Message::target is not stored: `target` is
};

/// An event as the store keeps it.
struct StoredEvent {
    EventId id = 0;
    std::string target{};
    Message message{};
    std::uint32_t attempts = 0;  // deliveries tried so far
    SystemTime enqueued_at{};
    SystemTime next_attempt_at{};
    bool dead = false;
    std::string last_error{};
    /// The row could not be read whole (its attributes are damaged): the relay makes it a
    /// dead letter with that reason instead of stopping on it.
    bool damaged = false;
};

/// What became of a delivery attempt, for OutboxStore::settle.
struct EventOutcome {
    enum class Kind {
        delivered,  // removed from the store
        retry,      // kept; due again at next_attempt_at
        dead,       // kept as a dead letter until redriven or purged
    };
    Kind kind = Kind::delivered;
    EventId id = 0;
    std::uint32_t attempts = 0;    // retry, dead: attempts so far
    SystemTime next_attempt_at{};  // retry
    std::string error{};           // retry, dead: the last attempt's error
    std::string target{};          // for reports; stores need not keep it
};

/// How many more events of each target a claim may take: a target whose deliveries hang holds
/// only its share of the relay, and the others go on.
struct TargetBound {
    std::size_t per_target = 0;  // events of one target out at once; 0: no bound
    std::unordered_map<std::string, std::size_t> out{};  // per target, already out
    /// Targets of which this claim takes at most so many events, whatever per_target says;
    /// 0 passes them over (the relay's open circuit breakers, and the one probe of each).
    std::unordered_map<std::string, std::size_t> cap{};

    /// Room left for `target` (SIZE_MAX without a bound). A target is claimed again only once
    /// half its share is back: a few events at a time would cost a whole claim each.
    std::size_t room(const std::string& target) const {
        std::size_t r = static_cast<std::size_t>(-1);
        if (per_target != 0) {
            const auto it = out.find(target);
            const std::size_t used = it == out.end() ? 0 : it->second;
            r = used > per_target / 2 ? 0 : per_target - used;
        }
        if (const auto c = cap.find(target); c != cap.end()) r = std::min(r, c->second);
        return r;
    }
    /// Whether any target's room is limited.
    bool bounded() const noexcept { return per_target != 0 || !cap.empty(); }
};

/// One target's backlog.
struct TargetSummary {
    std::string target{};
    std::uint64_t pending = 0;   // not delivered and not dead: waiting, in flight or retrying
    std::uint64_t retrying = 0;  // pending events that failed at least once
    std::uint64_t dead = 0;
    std::optional<SystemTime> oldest_pending{};  // when the oldest pending event was stored
    std::string last_error{};                    // of the most recent failure
    /// The relay's circuit breaker for the target (OutboxConfig::breaker), as the store keeps
    /// it: healthy when the relay has not reported it otherwise.
    TargetHealth health = TargetHealth::healthy;
    std::uint32_t consecutive_failures = 0;     // when it was last reported
    std::optional<SystemTime> next_probe_at{};  // open or disabled: its next probe may go then
};

/// A relay's circuit breaker for a target it has reported not healthy, kept in the store so
/// that another process (`outbox inspect`, a metrics page) sees it.
struct TargetBreakerState {
    std::string target{};
    TargetHealth health = TargetHealth::healthy;  // healthy: forget the target
    std::uint32_t consecutive_failures = 0;
    SystemTime failing_since{};
    std::optional<SystemTime> next_probe_at{};
    std::string last_error{};
};

/// A store's failure: the message names the store (its file) and the cause.
class StoreError : public std::runtime_error {
  public:
    enum class Kind { io, full, busy, corrupt, locked };
    StoreError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    Kind kind() const noexcept { return kind_; }

  private:
    Kind kind_;
};

/// Where the Outbox keeps its events. Implementations throw StoreError; anything else they
/// throw is taken as a StoreError of Kind::io.
class OutboxStore {
  public:
    virtual ~OutboxStore() = default;

    /// "sqlite:/var/lib/app/events.db": for messages.
    virtual std::string describe() const = 0;

    /// A random identity made when the store was created (16 hex digits): with an event's
    /// id, a key no other store's events share (SQS FIFO deduplication ids).
    virtual std::string identity() const = 0;

    /// Why this store cannot hold the event (empty: it can), checked before the event joins a
    /// transaction with others: a PostgreSQL text column takes no NUL byte and only UTF-8.
    /// Called from any thread; it must not touch the store's connection or file.
    virtual std::string refusal(const std::string& target, const Message& message) const {
        (void)target;
        (void)message;
        return {};
    }

    /// Stores every event in one transaction, durable when this returns; `ids` receives
    /// their ids in order. Throws StoreError; then none of them is stored.
    virtual void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) = 0;

    /// Claims up to `limit` events due at `now`, oldest first: of each (target, group) only
    /// the oldest event not yet delivered or dead, and none while that one is claimed; of each
    /// target no more than `targets` leaves room for. A claimed event is not returned again
    /// until it is settled or its claim released.
    virtual std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                           const TargetBound& targets) = 0;
    /// The same, with no bound per target.
    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit) {
        return claim(now, limit, TargetBound{});
    }

    /// Records outcomes (and ends their claims) in one transaction.
    virtual void settle(std::span<const EventOutcome> outcomes) = 0;

    /// Makes every claimed event claimable again: a relay starting (after a crash, the
    /// events it had in flight are delivered again) or stopping with events unsettled.
    virtual void release_claims() = 0;

    /// Stores whose claims are leases (PostgreSQL) extend those of this relay's claims that
    /// are past half their lease, so a delivery slower than the lease is not taken over while it
    /// runs. The relay calls it every poll_interval; others ignore it.
    virtual void renew_claims(SystemTime now) { (void)now; }

    /// Makes this the only relay of the store until the store is closed. Throws StoreError
    /// (Kind::locked) naming who holds it when another relay does.
    virtual void lock_for_relay() = 0;

    /// Stores that learn when other processes store events (PostgreSQL's LISTEN/NOTIFY) call
    /// `on_arrival` then, from a thread of their own, until the store is destroyed; the relay
    /// then claims at once instead of at its next poll. Others ignore it.
    virtual void watch_arrivals(std::function<void()> on_arrival) { (void)on_arrival; }

    /// When the next pending event that is not claimed becomes due, if there is one.
    virtual std::optional<SystemTime> next_due() = 0;

    /// One event, pending or dead; nothing when it is not in the store.
    virtual std::optional<StoredEvent> find(EventId id) = 0;

    /// Whether any event is pending (not delivered, not dead): cheap, unlike summarize().
    virtual bool has_pending() = 0;

    /// Each target with events or a breaker kept (see save_breaker), its breaker included.
    virtual std::vector<TargetSummary> summarize() = 0;

    /// Keeps the relay's breaker for `state.target` (healthy: forgets it), written when its
    /// reported health changes and when a probe fails. Stores that cannot keep it ignore it.
    virtual void save_breaker(const TargetBreakerState& state) { (void)state; }
    /// Forgets every breaker kept: a relay starting has none open.
    virtual void forget_breakers() {}

    /// Dead letters of `target` (every target when empty), oldest first.
    virtual std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) = 0;
    /// Dead letters of `target` (every target when empty) back to pending, due now, with their
    /// attempts and age counted afresh (their stored time becomes `now`). Returns how many.
    virtual std::uint64_t redrive(const std::string& target, SystemTime now) = 0;
    /// Removes every event of `target`, pending or dead. Returns how many.
    virtual std::uint64_t purge(const std::string& target) = 0;
    /// The bytes its events take (space freed by delivered events is reused, so this falls
    /// as the backlog drains even though the file does not shrink).
    virtual std::uint64_t size_bytes() = 0;
};

using OutboxStorePtr = std::unique_ptr<OutboxStore>;

}  // namespace outbox
