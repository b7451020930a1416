// The SQLite store's work on events: enqueues, claims (kept in memory), settlements, and the
// queries and admin commands; apart from opening it (sqlite_store.cpp).
#include "outbox/sqlite_store_impl.hpp"

#include "outbox/event_codec.hpp"

#include <sqlite3.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

namespace outbox::detail::sqlite {

std::optional<StoredEvent> SqliteStore::find(EventId id) {
    Use use(select_one_);
    sqlite3_bind_int64(use.stmt, 1, id);
    const int rc = sqlite3_step(use.stmt);
    if (rc == SQLITE_ROW) return read_event(use.stmt);
    if (rc != SQLITE_DONE) fail(rc, "find");
    return std::nullopt;
}

void SqliteStore::enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) {
    keep_disk_reserve(events);
    with_room([&] { insert_events(events, ids); });
}

// Refuses an enqueue that would leave less than min_free_disk_bytes free. A transaction
// takes about twice its bytes (the WAL, then the checkpoint into the file).
void SqliteStore::keep_disk_reserve(std::span<const NewEvent> events) {
    if (options_.min_free_disk_bytes == 0) return;
    struct statvfs disk {};
    if (::statvfs(directory_of(path_).c_str(), &disk) != 0) return;  // then SQLite says
    std::uint64_t bytes = 0;
    for (const NewEvent& e : events)
        bytes += e.message.body.size() + e.target.size() + e.message.group_id.size() + 64;
    const std::uint64_t free = std::uint64_t(disk.f_bavail) * disk.f_frsize;
    const std::uint64_t needed = options_.min_free_disk_bytes + 2 * bytes;
    if (free < needed)
        throw StoreError(StoreError::Kind::full, where() + ": enqueue: the disk has " +
                                                     std::to_string(free) + " bytes free; " +
                                                     std::to_string(options_.min_free_disk_bytes) +
                                                     " are kept for the relay to record deliveries "
                                                     "(min_free_disk_bytes)");
}

void SqliteStore::insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids) {
    ids.clear();
    ids.reserve(events.size());
    const std::int64_t now = to_ms(std::chrono::system_clock::now());
    if (sync_to_restore_) {  // a settlement's relaxed sync was not undone
        exec("PRAGMA synchronous = FULL", "settings");
        sync_to_restore_ = false;
    }
    Transaction tx(*this, "enqueue");
    std::string attributes;
    for (const NewEvent& e : events) {
        Use use(insert_);
        sqlite3_stmt* s = use.stmt;
        bind_text(s, 1, e.target);
        bind_text(s, 2, e.message.group_id);
        bind_blob(s, 3, e.message.body);
        attributes.clear();
        detail::encode_attributes(e.message.attributes, attributes);
        if (attributes.empty())
            sqlite3_bind_null(s, 4);
        else
            bind_blob(s, 4, attributes);
        bind_text(s, 5, e.message.deduplication_id);
        sqlite3_bind_int64(s, 6, e.message.delay.count());
        sqlite3_bind_int64(s, 7, now);
        sqlite3_bind_int64(s, 8, now);
        step_done(s, "enqueue");
        ids.push_back(sqlite3_last_insert_rowid(db_));
    }
    tx.commit();
}

// Claims live in this object, not in the file: a crash releases them with the process.
// The due index holds only groups' heads, so the rows passed over are the claimed ones (at
// most what is in flight).
std::vector<StoredEvent> SqliteStore::claim(SystemTime now, std::size_t limit,
                                            const TargetBound& targets) {
    std::vector<StoredEvent> out;
    if (limit == 0) return out;
    // Capped targets (open breakers, probes): target by target, each within its cap.
    if (!targets.cap.empty()) return claim_by_target(now, limit, targets);
    if (targets.per_target != 0) {
        // Every known target with room: one pass in due order, taking no more than the
        // least room (so none goes past its share). One without: target by target.
        std::size_t least = targets.per_target;
        for (const auto& [target, n] : targets.out) {
            const std::size_t room = targets.room(target);
            if (room == 0) return claim_by_target(now, limit, targets);
            least = std::min(least, room);
        }
        limit = std::min(limit, least);
    }
    Use use(select_due_);
    sqlite3_bind_int64(use.stmt, 1, to_ms(now));
    while (out.size() < limit) {
        const int rc = sqlite3_step(use.stmt);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) fail(rc, "claim");
        take_if_free(use.stmt, out);
    }
    return out;
}

// While a target has no room, a pass in due order would read all its due events to pass
// over them. This one finds each target with one probe of outbox_events_target_ready and
// reads the others' due events target by target, each giving at most its room and an equal
// share of `limit`, then what targets with less due left to those that gave a full share:
// at most twice `limit` events read plus two probes per target, whatever the backlogs.
std::vector<StoredEvent> SqliteStore::claim_by_target(SystemTime now, std::size_t limit,
                                                      const TargetBound& targets) {
    std::vector<std::pair<std::string, std::size_t>> open;  // target, room
    {
        std::optional<std::string> last;
        for (;;) {
            Use use(last ? select_next_target_ : select_first_target_);
            if (last) bind_text(use.stmt, 1, *last);
            const int rc = sqlite3_step(use.stmt);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) fail(rc, "claim");
            std::string target = column_text(use.stmt, 0);
            if (last && target == *last) break;  // a non-text target sorts after all text
            last = std::move(target);
            if (const std::size_t room = targets.room(*last); room != 0)
                open.emplace_back(*last, room);
        }
    }
    std::vector<StoredEvent> out;
    if (open.empty()) return out;
    std::vector<std::size_t> given(open.size(), 0);
    // Up to `more` more due events of open[i], past the ones it gave already.
    auto take_from = [&](std::size_t i, std::size_t more) {
        Use use(select_due_of_target_);
        bind_text(use.stmt, 1, open[i].first);
        sqlite3_bind_int64(use.stmt, 2, to_ms(now));
        for (const std::size_t until = given[i] + more; given[i] < until;) {
            const int rc = sqlite3_step(use.stmt);
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) fail(rc, "claim");
            if (take_if_free(use.stmt, out)) ++given[i];
        }
    };
    const std::size_t share = (limit + open.size() - 1) / open.size();
    for (std::size_t i = 0; i < open.size() && out.size() < limit; ++i)
        take_from(i, std::min({open[i].second, share, limit - out.size()}));
    // What targets with less due left of the claim goes to those that gave a full share.
    for (std::size_t i = 0; i < open.size() && out.size() < limit; ++i)
        if (given[i] == share && share < open[i].second)
            take_from(i, std::min(open[i].second - share, limit - out.size()));
    std::sort(out.begin(), out.end(), [](const StoredEvent& a, const StoredEvent& b) {
        return std::tie(a.next_attempt_at, a.id) < std::tie(b.next_attempt_at, b.id);
    });
    return out;
}

// Claims the event `s` is on into `out` unless it is out already (this claim's included),
// or its group has a member out (after a redrive, say, an older member may head it).
bool SqliteStore::take_if_free(sqlite3_stmt* s, std::vector<StoredEvent>& out) {
    if (claimed_.count(sqlite3_column_int64(s, 0))) return false;
    GroupKey group;
    if (sqlite3_column_bytes(s, 2) != 0) {
        group = {column_text(s, 1), column_text(s, 2)};
        if (claimed_groups_.count(group)) return false;
    }
    out.push_back(read_event(s));
    claimed_.insert(out.back().id);
    if (!group.second.empty()) {
        claimed_groups_.insert(group);
        grouped_claims_.emplace(out.back().id, std::move(group));
    }
    return true;
}

void SqliteStore::settle(std::span<const EventOutcome> outcomes) {
    if (outcomes.empty()) return;
    with_room([&] { settle_outcomes(outcomes); });
}

void SqliteStore::settle_outcomes(std::span<const EventOutcome> outcomes) {
    // A settlement's commit does not wait for the disk (it reaches it with the next
    // enqueue's or checkpoint's sync): a power loss may undo the last ones, and those events
    // are delivered again, never lost. Enqueues keep `synchronous = FULL`.
    const SyncRelaxed relaxed(*this);
    Transaction tx(*this, "settle");
    const std::int64_t now = to_ms(std::chrono::system_clock::now());
    for (const EventOutcome& o : outcomes) {
        switch (o.kind) {
            case EventOutcome::Kind::delivered: {
                // Claimed without a group: no head to hand on, a plain delete.
                const bool ungrouped = claimed_.count(o.id) && !grouped_claims_.count(o.id);
                Use use(ungrouped ? delete_event_ : delete_event_returning_);
                sqlite3_bind_int64(use.stmt, 1, o.id);
                if (ungrouped)
                    step_done(use.stmt, "settle");
                else
                    promote_next_of_group(use.stmt);
                break;
            }
            case EventOutcome::Kind::retry:
            case EventOutcome::Kind::dead: {
                Use use(update_failed_);
                sqlite3_bind_int64(use.stmt, 1, o.attempts);
                sqlite3_bind_int64(use.stmt, 2, to_ms(o.next_attempt_at));
                sqlite3_bind_int(use.stmt, 3, o.kind == EventOutcome::Kind::dead ? 1 : 0);
                bind_text(use.stmt, 4, o.error);
                sqlite3_bind_int64(use.stmt, 5, now);
                sqlite3_bind_int64(use.stmt, 6, o.id);
                if (o.kind == EventOutcome::Kind::dead)
                    promote_next_of_group(use.stmt);
                else
                    step_done(use.stmt, "settle");
                break;
            }
        }
    }
    tx.commit();
    for (const EventOutcome& o : outcomes) unclaim(o.id);  // recorded: no longer out
}

void SqliteStore::unclaim(EventId id) {
    claimed_.erase(id);
    if (auto it = grouped_claims_.find(id); it != grouped_claims_.end()) {
        claimed_groups_.erase(it->second);
        grouped_claims_.erase(it);
    }
}

// Steps a statement that took an event out of its group's living members (RETURNING
// target, group_key) and makes the group's next living event its head.
void SqliteStore::promote_next_of_group(sqlite3_stmt* taken) {
    const int rc = sqlite3_step(taken);
    if (rc == SQLITE_DONE) return;  // no such event
    if (rc != SQLITE_ROW) fail(rc, "settle");
    if (sqlite3_column_bytes(taken, 1) != 0) {
        Use use(promote_);
        sqlite3_bind_value(use.stmt, 1, sqlite3_column_value(taken, 0));
        sqlite3_bind_value(use.stmt, 2, sqlite3_column_value(taken, 1));
        step_done(use.stmt, "settle");
    }
    step_done(taken, "settle");
}

void SqliteStore::release_claims() {
    claimed_.clear();
    grouped_claims_.clear();
    claimed_groups_.clear();
}

// The first head that is not out: past the claimed ones, at most what is in flight.
std::optional<SystemTime> SqliteStore::next_due() {
    Use use(select_next_due_);
    for (;;) {
        const int rc = sqlite3_step(use.stmt);
        if (rc == SQLITE_DONE) return std::nullopt;
        if (rc != SQLITE_ROW) fail(rc, "next due");
        if (!claimed_.count(sqlite3_column_int64(use.stmt, 1)))
            return from_ms(sqlite3_column_int64(use.stmt, 0));
    }
}

bool SqliteStore::has_pending() {
    Use use(select_any_pending_);
    const int rc = sqlite3_step(use.stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc, "has pending");
    return rc == SQLITE_ROW;
}

// One pass over the events, counted per target in memory (as many entries as targets: a
// GROUP BY would sort every event, in memory with temp_store = MEMORY), then each target's
// last error from the index of failed events.
std::vector<TargetSummary> SqliteStore::summarize() {
    std::map<std::string, TargetSummary, std::less<>> by_target;
    {
        Statement s(db_, "SELECT target, dead, attempts, enqueued_at FROM outbox_events",
                    where() + ": summarize");
        for (;;) {
            const int rc = sqlite3_step(s.get());
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) fail(rc, "summarize");
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(s.get(), 0));
            const std::string_view target(
                p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s.get(), 0)));
            auto it = by_target.find(target);
            if (it == by_target.end()) {
                it = by_target.emplace(std::string(target), TargetSummary{}).first;
                it->second.target = it->first;
            }
            TargetSummary& t = it->second;
            if (sqlite3_column_int(s.get(), 1) != 0) {
                ++t.dead;
                continue;
            }
            ++t.pending;
            if (sqlite3_column_int64(s.get(), 2) > 0) ++t.retrying;
            const auto enqueued = from_ms(sqlite3_column_int64(s.get(), 3));
            if (!t.oldest_pending || enqueued < *t.oldest_pending) t.oldest_pending = enqueued;
        }
    }
    Statement last(db_,
                   "SELECT last_error FROM outbox_events WHERE target = ?1 AND failed_at > 0 "
                   "ORDER BY failed_at DESC, id DESC LIMIT 1",
                   where() + ": summarize");
    std::vector<TargetSummary> out;
    out.reserve(by_target.size());
    for (auto& [target, t] : by_target) {
        Use use(last);
        bind_text(use.stmt, 1, target);
        const int rc = sqlite3_step(use.stmt);
        if (rc == SQLITE_ROW)
            t.last_error = column_text(use.stmt, 0);
        else if (rc != SQLITE_DONE)
            fail(rc, "summarize");
        out.push_back(std::move(t));
    }
    std::vector<TargetBreakerState> breakers;
    Statement b(db_,
                "SELECT target, health, consecutive_failures, failing_since, next_probe_at, "
                "last_error FROM outbox_breakers",
                where() + ": summarize");
    for (;;) {
        const int rc = sqlite3_step(b.get());
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) fail(rc, "summarize");
        TargetBreakerState k;
        k.target = column_text(b.get(), 0);
        k.health = health_from_name(column_text(b.get(), 1));
        k.consecutive_failures = static_cast<std::uint32_t>(sqlite3_column_int64(b.get(), 2));
        k.failing_since = from_ms(sqlite3_column_int64(b.get(), 3));
        if (sqlite3_column_type(b.get(), 4) != SQLITE_NULL)
            k.next_probe_at = from_ms(sqlite3_column_int64(b.get(), 4));
        k.last_error = column_text(b.get(), 5);
        breakers.push_back(std::move(k));
    }
    merge_breakers(out, std::move(breakers));
    return out;
}

void SqliteStore::save_breaker(const TargetBreakerState& state) {
    SyncRelaxed relaxed(*this);  // a breaker lost in a power cut only starts closed
    if (state.health == TargetHealth::healthy) {
        Statement s(db_, "DELETE FROM outbox_breakers WHERE target = ?1", where() + ": breakers");
        bind_text(s.get(), 1, state.target);
        return with_room([&] {
            sqlite3_reset(s.get());
            step_done(s.get(), "saving a breaker");
        });
    }
    Statement s(db_,
                "INSERT OR REPLACE INTO outbox_breakers(target, health, consecutive_failures, "
                "failing_since, next_probe_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                where() + ": breakers");
    bind_text(s.get(), 1, state.target);
    bind_text(s.get(), 2, to_string(state.health));
    sqlite3_bind_int64(s.get(), 3, state.consecutive_failures);
    sqlite3_bind_int64(s.get(), 4, to_ms(state.failing_since));
    if (state.next_probe_at) sqlite3_bind_int64(s.get(), 5, to_ms(*state.next_probe_at));
    bind_text(s.get(), 6, state.last_error);
    with_room([&] {
        sqlite3_reset(s.get());
        step_done(s.get(), "saving a breaker");
    });
}

void SqliteStore::forget_breakers() {
    SyncRelaxed relaxed(*this);
    with_room([&] { exec("DELETE FROM outbox_breakers", "forgetting breakers"); });
}

std::vector<StoredEvent> SqliteStore::dead_letters(const std::string& target, std::size_t limit) {
    Statement s(db_,
                "SELECT id, target, group_key, body, attributes, dedup_id, delay_s, "
                "enqueued_at, next_attempt_at, attempts, dead, last_error FROM outbox_events "
                "WHERE dead = 1 AND (?1 = '' OR target = ?1) ORDER BY id LIMIT ?2",
                where() + ": dead letters");
    bind_text(s.get(), 1, target);
    sqlite3_bind_int64(s.get(), 2, static_cast<std::int64_t>(limit));
    std::vector<StoredEvent> out;
    for (;;) {
        const int rc = sqlite3_step(s.get());
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) fail(rc, "dead letters");
        out.push_back(read_event(s.get()));
    }
    return out;
}

std::uint64_t SqliteStore::redrive(const std::string& target, SystemTime now) {
    Transaction tx(*this, "redrive");
    Statement s(db_,
                "UPDATE outbox_events SET dead = 0, attempts = 0, next_attempt_at = ?2, "
                "enqueued_at = ?2 WHERE dead = 1 AND (?1 = '' OR target = ?1)",
                where() + ": redrive");
    bind_text(s.get(), 1, target);
    sqlite3_bind_int64(s.get(), 2, to_ms(now));
    step_done(s.get(), "redrive");
    const auto n = static_cast<std::uint64_t>(sqlite3_changes64(db_));
    if (n != 0) {  // a redriven event may now head its group
        Statement r(db_, recompute_waiting, where() + ": redrive");
        bind_text(r.get(), 1, target);
        step_done(r.get(), "redrive");
    }
    tx.commit();
    return n;
}

std::uint64_t SqliteStore::purge(const std::string& target) {
    Transaction tx(*this, "purge");
    Statement s(db_, "DELETE FROM outbox_events WHERE target = ?1", where() + ": purge");
    bind_text(s.get(), 1, target);
    step_done(s.get(), "purge");
    const auto n = static_cast<std::uint64_t>(sqlite3_changes64(db_));
    tx.commit();
    return n;
}

StoredEvent SqliteStore::read_event(sqlite3_stmt* s) const {
    StoredEvent e;
    e.id = sqlite3_column_int64(s, 0);
    e.target = column_text(s, 1);
    e.message.group_id = column_text(s, 2);
    e.message.body = column_text(s, 3);
    if (sqlite3_column_type(s, 4) != SQLITE_NULL &&
        !detail::decode_attributes(column_text(s, 4), e.message.attributes)) {
        e.damaged = true;
        e.last_error = "its stored attributes are damaged and cannot be read";
    }
    e.message.deduplication_id = column_text(s, 5);
    e.message.delay = std::chrono::seconds(sqlite3_column_int64(s, 6));
    e.enqueued_at = from_ms(sqlite3_column_int64(s, 7));
    e.next_attempt_at = from_ms(sqlite3_column_int64(s, 8));
    e.attempts = static_cast<std::uint32_t>(sqlite3_column_int64(s, 9));
    e.dead = sqlite3_column_int(s, 10) != 0;
    if (!e.damaged) e.last_error = column_text(s, 11);
    return e;
}

}  // namespace outbox::detail::sqlite
