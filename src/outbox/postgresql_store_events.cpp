// The PostgreSQL store's other operations on events: enqueue, and the reads and repairs
// (next due, find, summaries, dead letters, redrive, purge, size). Apart from the claims.
#include "outbox/postgresql_store_impl.hpp"

#include "outbox/event_codec.hpp"
#include "outbox/postgresql_text.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace outbox::detail::postgresql {

void PostgresqlStore::enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) {
    for (std::size_t i = 0; i < events.size(); ++i)
        if (std::string why = refusal(events[i].target, events[i].message); !why.empty())
            throw StoreError(StoreError::Kind::io,
                             where() + ": enqueue: event " + std::to_string(i) + ": " + why);
    // Lost before COMMIT went out: nothing was stored, so once more on a new connection.
    for (int attempt = 0;; ++attempt) {
        bool commit_sent = false;
        try {
            ensure_connected("enqueue");
            insert_events(events, ids, commit_sent);
            return;
        } catch (const ConnectionLost& lost) {
            drop_connection();
            if (commit_sent)
                throw StoreError(StoreError::Kind::io,
                                 where() +
                                     ": enqueue: the connection was lost while "
                                     "committing; the events may or may not be "
                                     "stored: " +
                                     lost.what);
            if (attempt > 0)
                throw StoreError(StoreError::Kind::io, where() + ": enqueue: " + lost.what);
        } catch (const StoreError& e) {
            // A deadlock with an application's transaction over group locks: nothing was
            // stored, and the other transaction is gone.
            if (e.kind() != StoreError::Kind::busy || commit_sent || attempt > 1) throw;
        }
    }
}

// ---- enqueue ----------------------------------------------------------------------

// One transaction, sent as pipelines of a few hundred statements (one round trip each),
// small enough that neither side's socket buffer fills while the other is still writing.
void PostgresqlStore::insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids,
                                    bool& commit_sent) {
    ids.clear();
    ids.reserve(events.size());
    PGconn* c = conn_.get();
    // BEGIN alone first: a connection the server dropped while it sat idle shows here,
    // before anything could have been stored, and the caller retries on a new one.
    {
        Result begin(PQexec(c, "BEGIN"));
        check(begin.get(), PGRES_COMMAND_OK, "enqueue");
    }
    lock_groups(events);
    if (PQenterPipelineMode(c) != 1) throw ConnectionLost{trimmed(PQerrorMessage(c))};
    struct PipelineExit {
        PGconn* c;
        ~PipelineExit() { PQexitPipelineMode(c); }
    } exit_pipeline{c};
    constexpr std::size_t chunk = 256;
    std::string first_error, sqlstate;
    std::vector<std::string> texts(3);
    std::string attributes, delay;
    std::size_t next = 0;
    bool done = false;
    while (!done) {
        std::size_t sent = 0;
        for (; next < events.size() && sent < chunk; ++next, ++sent) {
            const EnqueueParams p(events[next].target, events[next].message);
            if (!PQsendQueryPrepared(c, enqueue_sql.name, 6, p.values.data(), p.lengths.data(),
                                     EnqueueParams::formats.data(), 1))
                throw ConnectionLost{trimmed(PQerrorMessage(c))};
        }
        if (next == events.size()) {
            if (!PQsendQueryParams(c, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 1))
                throw ConnectionLost{trimmed(PQerrorMessage(c))};
            ++sent;
            commit_sent = true;
            done = true;
        }
        if (!PQpipelineSync(c)) throw ConnectionLost{trimmed(PQerrorMessage(c))};
        // Each statement's result, then the sync.
        for (std::size_t i = 0; i < sent; ++i) {
            Result r(PQgetResult(c));
            if (!r) throw ConnectionLost{trimmed(PQerrorMessage(c))};
            const ExecStatusType status = PQresultStatus(r.get());
            if (status == PGRES_TUPLES_OK && PQntuples(r.get()) == 1)
                ids.push_back(get_i64(r.get(), 0, 0));
            else if (status == PGRES_FATAL_ERROR && first_error.empty()) {
                first_error = trimmed(PQresultErrorMessage(r.get()));
                const char* s = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
                sqlstate = s ? s : "";
            }
            while (PGresult* more = PQgetResult(c)) PQclear(more);  // ends this statement
        }
        Result sync(PQgetResult(c));
        if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC)
            throw ConnectionLost{trimmed(PQerrorMessage(c))};
        if (PQstatus(c) != CONNECTION_OK) throw ConnectionLost{"the connection was lost"};
        if (!first_error.empty()) break;
    }
    if (!first_error.empty()) {
        PQexitPipelineMode(c);
        PQclear(PQexec(c, "ROLLBACK"));
        ids.clear();
        throw StoreError(sqlstate == "53100" ? StoreError::Kind::full : StoreError::Kind::io,
                         where() + ": enqueue: " + first_error);
    }
    if (ids.size() != events.size())
        throw StoreError(StoreError::Kind::io, where() + ": enqueue: the server returned " +
                                                   std::to_string(ids.size()) + " ids for " +
                                                   std::to_string(events.size()) + " events");
}

// The batch's groups locked in one order (the keys sorted) before any insert, as
// outbox.enqueue would lock them one by one: two batches never wait on each other in a
// circle. An application's transaction may still (a deadlock PostgreSQL breaks; enqueue
// then tries again).
void PostgresqlStore::lock_groups(std::span<const NewEvent> events) {
    std::string targets = "{", groups = "{";
    for (const NewEvent& e : events) {
        if (e.message.group_id.empty()) continue;
        if (targets.size() > 1) {
            targets.push_back(',');
            groups.push_back(',');
        }
        detail::append_array_text(targets, e.target);
        detail::append_array_text(groups, e.message.group_id);
    }
    if (targets.size() == 1) return;
    targets.push_back('}');
    groups.push_back('}');
    Result r = exec(lock_groups_sql, {targets.c_str(), groups.c_str()}, "enqueue");
}

std::optional<SystemTime> PostgresqlStore::next_due() {
    return retrying("next due", [&]() -> std::optional<SystemTime> {
        const std::string now = std::to_string(to_ms(std::chrono::system_clock::now()));
        Result r = exec_prepared(next_due_sql, {now.c_str()}, "next due");
        if (PQntuples(r.get()) == 0) return std::nullopt;
        return from_ms(get_i64(r.get(), 0, 0));
    });
}

std::optional<StoredEvent> PostgresqlStore::find(EventId id) {
    return retrying("find", [&]() -> std::optional<StoredEvent> {
        const std::string text = std::to_string(id);
        Result r = exec_prepared(find_sql, {text.c_str()}, "find");
        if (PQntuples(r.get()) == 0) return std::nullopt;
        return read_event(r.get(), 0);
    });
}

bool PostgresqlStore::has_pending() {
    return retrying("has pending", [&] {
        Result r = exec_prepared(any_pending_sql, {}, "has pending");
        return get_bool(r.get(), 0, 0);
    });
}

std::vector<TargetSummary> PostgresqlStore::summarize() {
    return retrying("summarize", [&] {
        Result r = exec(
            "SELECT e.target, count(*) FILTER (WHERE NOT e.dead), count(*) FILTER (WHERE NOT "
            "e.dead AND e.attempts > 0), count(*) FILTER (WHERE e.dead), (extract(epoch FROM "
            "min(e.enqueued_at) FILTER (WHERE NOT e.dead)) * 1000)::int8, (SELECT l.last_error "
            "FROM outbox.events l WHERE l.target = e.target AND l.failed_at IS NOT NULL ORDER "
            "BY l.failed_at DESC, l.id DESC LIMIT 1) FROM outbox.events e GROUP BY e.target "
            "ORDER BY e.target",
            {}, "summarize");
        std::vector<TargetSummary> out;
        for (int i = 0; i < PQntuples(r.get()); ++i) {
            TargetSummary t;
            t.target = get_bytes(r.get(), i, 0);
            t.pending = static_cast<std::uint64_t>(get_i64(r.get(), i, 1));
            t.retrying = static_cast<std::uint64_t>(get_i64(r.get(), i, 2));
            t.dead = static_cast<std::uint64_t>(get_i64(r.get(), i, 3));
            if (!PQgetisnull(r.get(), i, 4)) t.oldest_pending = from_ms(get_i64(r.get(), i, 4));
            t.last_error = get_bytes(r.get(), i, 5);
            out.push_back(std::move(t));
        }
        if (!breakers_readable_) return out;
        Result b = exec(read_breakers_sql, {}, "summarize");
        std::vector<TargetBreakerState> breakers;
        for (int i = 0; i < PQntuples(b.get()); ++i) {
            TargetBreakerState k;
            k.target = get_bytes(b.get(), i, 0);
            k.health = health_from_name(get_bytes(b.get(), i, 1));
            k.consecutive_failures = static_cast<std::uint32_t>(get_i64(b.get(), i, 2));
            k.failing_since = from_ms(get_i64(b.get(), i, 3));
            if (!PQgetisnull(b.get(), i, 4)) k.next_probe_at = from_ms(get_i64(b.get(), i, 4));
            k.last_error = get_bytes(b.get(), i, 5);
            breakers.push_back(std::move(k));
        }
        merge_breakers(out, std::move(breakers));
        return out;
    });
}

void PostgresqlStore::save_breaker(const TargetBreakerState& state) {
    if (!breakers_writable_) return;
    if (state.health != TargetHealth::healthy) breakers_saved_ = true;
    retrying("saving a breaker", [&] {
        if (state.health == TargetHealth::healthy) {
            exec("DELETE FROM outbox.breakers WHERE target = $1 AND relay = $2",
                 {state.target.c_str(), me_.c_str()}, "saving a breaker");
            return 0;
        }
        const std::string failures = std::to_string(state.consecutive_failures);
        const std::string since = std::to_string(to_ms(state.failing_since));
        const std::string probe =
            state.next_probe_at ? std::to_string(to_ms(*state.next_probe_at)) : std::string();
        exec(save_breaker_sql,
             {state.target.c_str(), me_.c_str(), to_string(state.health), failures.c_str(),
              since.c_str(), state.next_probe_at ? probe.c_str() : nullptr,
              state.last_error.c_str()},
             "saving a breaker");
        return 0;
    });
}

// This relay's, and those no relay has kept fresh (a relay that crashed left them).
void PostgresqlStore::forget_breakers() {
    if (!breakers_writable_) return;
    retrying("forgetting breakers", [&] {
        exec(forget_breakers_sql, {me_.c_str()}, "forgetting breakers");
        return 0;
    });
    breakers_saved_ = false;
}

// A running relay's rows are rewritten every minute, so readers trust only fresh ones: those
// of a relay that died fade within 10 minutes.
void PostgresqlStore::touch_breakers(SystemTime now) {
    if (!breakers_writable_ || !breakers_saved_ || now < next_breaker_touch_) return;
    next_breaker_touch_ = now + std::chrono::minutes(1);
    try {
        retrying("keeping breakers", [&] {
            exec("UPDATE outbox.breakers SET updated_at = now() WHERE relay = $1", {me_.c_str()},
                 "keeping breakers");
            return 0;
        });
    } catch (const StoreError&) {  // the claims' renewal matters more; tried again in a minute
    }
}

std::vector<StoredEvent> PostgresqlStore::dead_letters(const std::string& target,
                                                       std::size_t limit) {
    return retrying("dead letters", [&] {
        const std::string max =
            std::to_string(std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
        Result r = exec("SELECT " OUTBOX_EVENT_COLUMNS(
                            "e") " FROM outbox.events e WHERE e.dead AND ($1 = '' OR "
                                 "e.target = $1) ORDER BY e.id LIMIT $2::int8",
                        {target.c_str(), max.c_str()}, "dead letters");
        std::vector<StoredEvent> out;
        for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_event(r.get(), i));
        return out;
    });
}

std::uint64_t PostgresqlStore::redrive(const std::string& target, SystemTime now) {
    return retrying("redrive", [&] {
        const std::string at = std::to_string(to_ms(now));
        Transaction tx(*this, "redrive", begin_marking);
        Result r = exec(
            "UPDATE outbox.events SET dead = false, attempts = 0, "
            "next_attempt_at = to_timestamp($2::int8 / 1000.0), enqueued_at = "
            "to_timestamp($2::int8 / 1000.0) WHERE dead AND ($1 = '' OR target = $1)",
            {target.c_str(), at.c_str()}, "redrive");
        const std::uint64_t n = std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
        exec(recompute_waiting, {target.c_str()}, "redrive");  // new heads, and repairs
        tx.commit();
        return n;
    });
}

std::uint64_t PostgresqlStore::purge(const std::string& target) {
    return retrying("purge", [&] {
        // Under the marks lock, and the marks checked after: an event committed after
        // this snapshot and marked behind a purged one would otherwise wait for ever.
        Transaction tx(*this, "purge", begin_marking);
        Result r = exec(
            "WITH gone AS (DELETE FROM outbox.events WHERE target = $1 RETURNING id), "
            "unclaimed AS (DELETE FROM outbox.claims WHERE event_id IN (SELECT id FROM gone)) "
            "SELECT count(*) FROM gone",
            {target.c_str()}, "purge");
        exec(recompute_waiting, {target.c_str()}, "purge");
        tx.commit();
        return static_cast<std::uint64_t>(get_i64(r.get(), 0, 0));
    });
}

std::uint64_t PostgresqlStore::size_bytes() {
    return retrying("size", [&] {
        Result r = exec("SELECT pg_total_relation_size('outbox.events')", {}, "size");
        return static_cast<std::uint64_t>(get_i64(r.get(), 0, 0));
    });
}

}  // namespace outbox::detail::postgresql
