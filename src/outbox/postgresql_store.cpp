// The PostgreSQL store. Relays on many processes share it: a claim is a lease, a small row in
// outbox.claims (rewriting the event's own row would copy its body), taken with FOR NO KEY
// UPDATE SKIP LOCKED on the events so no relay waits on another's rows; an expired claim is
// taken over by the next relay that finds the event.
// Group order: the application's enqueues of one group take a transaction-scoped advisory
// lock, so ids within a group follow commit order; a claim takes only a group's oldest living
// event, and marks the events it finds behind a head `waiting` so later claims skip them.
// Marking and promoting the next head are serialized by one more advisory lock (the marking
// only tries it), which is what keeps a mark from outliving its head. See
// docs/outbox-postgresql.md.
#include <outbox/postgresql_store.hpp>
#include <outbox/sqlite_store.hpp>

#include "outbox/event_codec.hpp"
#include "outbox/postgresql_text.hpp"

#include <libpq-fe.h>
#include <simdjson.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace outbox {
namespace {

using detail::from_ms;
using detail::to_ms;

constexpr int schema_version = 1;
// Advisory lock keys (two-int form): the first names outbox's use, so an application's own
// advisory locks do not meet them. 'obxs' schema changes, 'obxm' group marks, 'obxg' groups.
constexpr const char* begin_migrating = "BEGIN; SELECT pg_advisory_xact_lock(1868724339, 0)";
constexpr const char* begin_marking = "BEGIN; SELECT pg_advisory_xact_lock(1868724333, 0)";
// Claims and settlements commit without waiting for the disk: one lost in a database crash
// only means the event is delivered again (at least once holds). Enqueues, redrives and purges
// keep the server's own setting.
constexpr const char* begin_claim =
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "SELECT pg_try_advisory_xact_lock(1868724333, 0)";
constexpr const char* begin_claim_waiting =
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "SELECT true FROM (SELECT pg_advisory_xact_lock(1868724333, 0)) AS locked";
constexpr const char* begin_settle = "BEGIN; SET LOCAL synchronous_commit = off";
constexpr const char* begin_grouped_settle =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock(1868724333, 0)";
constexpr const char* notify_channel = "outbox_events";
// The same key outbox.enqueue_bytes computes for a group.
constexpr const char* lock_groups_sql =
    "SELECT count(pg_advisory_xact_lock(1868724327, k)) FROM (SELECT DISTINCT "
    "hashtext(length(t)::text || ':' || t || g) AS k FROM unnest($1::text[], $2::text[]) AS "
    "x(t, g) ORDER BY k) keys";

constexpr const char* schema = R"sql(
CREATE TABLE outbox.events(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target text NOT NULL CHECK (target <> ''),
    group_id text NOT NULL DEFAULT '',
    body bytea NOT NULL,
    attributes jsonb,
    deduplication_id text NOT NULL DEFAULT '',
    delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds BETWEEN 0 AND 900),
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    dead boolean NOT NULL DEFAULT false,
    waiting boolean NOT NULL DEFAULT false,
    last_error text NOT NULL DEFAULT '',
    failed_at timestamptz);
CREATE TABLE outbox.claims(
    event_id bigint PRIMARY KEY,
    relay text NOT NULL,
    until timestamptz NOT NULL);
COMMENT ON TABLE outbox.claims IS
    'Events a relay is delivering: its lease runs until `until`, then any relay takes the event';
COMMENT ON TABLE outbox.events IS
    'Events not yet delivered, and dead letters. Write with outbox.enqueue(); see outbox''s docs/outbox-postgresql.md';
-- Claims read the living heads in due order; the group index finds a group's oldest event.
CREATE INDEX events_ready ON outbox.events(next_attempt_at, id) WHERE NOT dead AND NOT waiting;
CREATE INDEX events_group ON outbox.events(target, group_id, id) WHERE NOT dead;
CREATE INDEX events_dead ON outbox.events(target, id) WHERE dead;

CREATE FUNCTION outbox.enqueue_bytes(target text, body bytea, group_id text DEFAULT NULL,
        deduplication_id text DEFAULT NULL, delay_seconds integer DEFAULT 0,
        attributes jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    event_id bigint;
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'outbox.enqueue: target is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'outbox.enqueue: body is null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF coalesce($5, 0) NOT BETWEEN 0 AND 900 THEN
        RAISE EXCEPTION 'outbox.enqueue: delay_seconds is %, it must be 0 to 900', $5
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $6 IS NOT NULL AND jsonb_typeof($6) <> 'object' THEN
        RAISE EXCEPTION 'outbox.enqueue: attributes must be a JSON object like {"name": {"DataType": "String", "StringValue": "value"}}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce($3, '') <> '' THEN
        -- One transaction at a time per group, until it commits: ids within a group follow
        -- commit order, which is the order the relays deliver them in.
        PERFORM pg_advisory_xact_lock(1868724327, hashtext(length($1)::text || ':' || $1 || $3));
    END IF;
    INSERT INTO outbox.events(target, group_id, body, deduplication_id, delay_seconds, attributes)
        VALUES ($1, coalesce($3, ''), $2, coalesce($4, ''), coalesce($5, 0), $6)
        RETURNING id INTO event_id;
    -- Wakes the relays at once. Every notifying commit takes a lock of the whole cluster
    -- for its flush; with SET outbox.notify = off relays find events by polling instead.
    IF coalesce(current_setting('outbox.notify', true), '') <> 'off' THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN event_id;
END
$fn$;

CREATE FUNCTION outbox.enqueue(target text, body text, group_id text DEFAULT NULL,
        deduplication_id text DEFAULT NULL, delay_seconds integer DEFAULT 0,
        attributes jsonb DEFAULT NULL)
    RETURNS bigint LANGUAGE sql AS $fn$
    SELECT outbox.enqueue_bytes($1, convert_to($2, 'UTF8'), $3, $4, $5, $6)
$fn$;
)sql";

// Added after the first release, and compatible with it (the schema's version stays 1): made
// with the schema, or when a newer outbox opens a database without it.
constexpr const char* target_index_exists =
    "SELECT to_regclass('outbox.events_target_ready') IS NOT NULL";
constexpr const char* target_index = R"sql(
CREATE INDEX IF NOT EXISTS events_target_ready ON outbox.events(target, next_attempt_at, id)
    WHERE NOT dead AND NOT waiting;
COMMENT ON INDEX outbox.events_target_ready IS
    'Claims while a target has no room read the due events target by target';
)sql";

// Columns of an event as the store reads it, times in milliseconds since the epoch.
#define OUTBOX_EVENT_COLUMNS(e)                                                                 \
    e ".id, " e ".target, " e ".group_id, " e ".body, " e ".attributes::text AS attributes, " e \
      ".deduplication_id, " e ".delay_seconds, (extract(epoch FROM " e                          \
      ".enqueued_at) * 1000)::int8 AS enqueued_ms, (extract(epoch FROM " e                      \
      ".next_attempt_at) * 1000)::int8 AS next_ms, " e ".attempts, " e ".dead, " e ".last_error"

struct PreparedStatement {
    const char* name;
    const char* sql;
};

// What both claims do with their candidates: mark the ones behind their group's head (when
// $5 says this claim holds the marks lock), take the others with a lease of $3 ms for relay $4,
// and return the candidates' columns, whether each is behind its group's head, and whether this
// claim took it.
// A candidate can be another relay's: its claim may have committed after this statement's
// snapshot was taken, releasing the row lock SKIP LOCKED would have skipped; the insert sees the
// committed claim, leaves a live one alone, and the event is not returned as ours. "Now" is the
// later of the relay's clock ($1) and the database's: a relay whose clock is behind still sees
// what was just committed, and its lease lasts as long in the database's time.
#define OUTBOX_NOW "greatest(to_timestamp($1::int8 / 1000.0), statement_timestamp())"
#define OUTBOX_CLAIMABLE(e)                                                         \
    "NOT " e ".dead AND NOT " e ".waiting AND " e ".next_attempt_at <= " OUTBOX_NOW \
    " AND NOT EXISTS (SELECT 1 FROM outbox.claims c WHERE c.event_id = " e          \
    ".id AND c.until > " OUTBOX_NOW ")"
#define OUTBOX_BEHIND(e)                                                                  \
    "(" e ".group_id <> '' AND EXISTS (SELECT 1 FROM outbox.events o WHERE o.target = " e \
    ".target AND o.group_id = " e ".group_id AND NOT o.dead AND o.id < " e ".id)) AS behind"
#define OUTBOX_CLAIM_TAKE                                                                       \
    "marked AS (UPDATE outbox.events e SET waiting = true FROM candidates c WHERE e.id = c.id " \
    "AND c.behind AND $5::bool), "                                                              \
    "claimed AS (INSERT INTO outbox.claims AS k(event_id, relay, until) SELECT id, "            \
    "$4, " OUTBOX_NOW                                                                           \
    " + $3::int8 * interval '1 ms' FROM candidates WHERE NOT behind ON CONFLICT (event_id) DO " \
    "UPDATE SET relay = excluded.relay, until = excluded.until WHERE k.until <= " OUTBOX_NOW    \
    " RETURNING event_id) "                                                                     \
    "SELECT c.*, k.event_id IS NOT NULL AS ours FROM candidates c LEFT JOIN claimed k ON "      \
    "k.event_id = c.id ORDER BY c.id"

// $1 now (ms), $2 how many, $3 the lease, $4 this relay, $5 may mark: the due events in due
// order, across targets (every target the relay knows has room for $2).
const PreparedStatement claim_sql{
    "outbox_claim",
    "WITH candidates AS (SELECT " OUTBOX_EVENT_COLUMNS("e") ", " OUTBOX_BEHIND(
        "e") " FROM outbox.events e WHERE " OUTBOX_CLAIMABLE("e") " ORDER BY e.next_attempt_at, "
                                                                  "e.id LIMIT $2 FOR NO KEY "
                                                                  "UPDATE OF e SKIP LOCKED), "
        OUTBOX_CLAIM_TAKE};

// The same while some targets have no room: $6 the targets passed over, $7 and $8 the others
// the relay knows and their room, $9 the room of one it does not. A scan in due order would
// read every due event of a full target to pass over it; this one finds each target with one
// probe of events_target_ready (a skip scan) and another for whether it has anything due, and
// reads due events target by target: each gives at most its room and an equal share of $2
// among those with something due (`cap`), so a claim reads about $2 events plus two probes per
// target, whatever the backlogs.
const PreparedStatement claim_by_target_sql{
    "outbox_claim_by_target",
    "WITH RECURSIVE targets(t) AS (SELECT min(target) FROM outbox.events WHERE NOT dead AND NOT "
    "waiting UNION ALL SELECT (SELECT min(x.target) FROM outbox.events x WHERE NOT x.dead AND "
    "NOT x.waiting AND x.target > targets.t) FROM targets WHERE targets.t IS NOT NULL), "
    "open AS MATERIALIZED (SELECT t, coalesce((SELECT k.room FROM unnest($7::text[], "
    "$8::int8[]) AS k(target, room) WHERE k.target = targets.t), $9::int8) AS room FROM targets "
    "WHERE t IS NOT NULL AND t <> ALL($6::text[]) AND EXISTS (SELECT 1 FROM outbox.events d "
    "WHERE d.target = targets.t AND NOT d.dead AND NOT d.waiting AND d.next_attempt_at <= " OUTBOX_NOW
    ")), "
    "share AS (SELECT greatest(1, ceil($2::numeric / greatest(1, count(*))))::int8 AS n FROM "
    "open), "
    "candidates AS (SELECT " OUTBOX_EVENT_COLUMNS("e") ", least(open.room, share.n) AS cap, " OUTBOX_BEHIND(
        "e") " FROM open, share, LATERAL (SELECT * FROM outbox.events e WHERE e.target = open.t "
             "AND " OUTBOX_CLAIMABLE("e") " ORDER BY e.next_attempt_at, e.id LIMIT "
                                          "least(open.room, share.n) FOR NO KEY UPDATE OF e SKIP "
                                          "LOCKED) e ORDER BY e.next_attempt_at, e.id LIMIT $2), "
        OUTBOX_CLAIM_TAKE};

// $1 ids delivered. The next living event of each group becomes its head; the statement's
// snapshot still shows the deleted rows, hence `<> ALL($1)`.
const PreparedStatement delete_sql{
    "outbox_delete",
    "WITH gone AS (DELETE FROM outbox.events WHERE id = ANY($1::int8[]) RETURNING id, target, "
    "group_id), "
    "unclaimed AS (DELETE FROM outbox.claims WHERE event_id = ANY($1::int8[])), "
    "heads AS (SELECT (SELECT o.id FROM outbox.events o WHERE o.target = g.target AND o.group_id "
    "= g.group_id AND NOT o.dead AND o.id <> ALL($1::int8[]) ORDER BY o.id LIMIT 1) AS id FROM "
    "gone g WHERE g.group_id <> '') "
    "UPDATE outbox.events e SET waiting = false FROM heads h WHERE e.id = h.id AND e.waiting"};

// $1 ids, $2 attempts, $3 next attempt (ms), $4 dead, $5 errors, $6 this relay. A claim another
// relay took over (our lease ran out) is not ours to record a failure on: the failures are
// those whose claim this relay still holds, found by deleting it (a takeover committing
// meanwhile is rechecked by the delete, and left alone).
const PreparedStatement fail_sql{
    "outbox_fail",
    "WITH mine AS (DELETE FROM outbox.claims WHERE event_id = ANY($1::int8[]) AND relay = $6 "
    "RETURNING event_id), "
    "o AS (SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::bool[], $5::text[]) AS "
    "o(id, attempts, next_ms, dead, error) WHERE o.id IN (SELECT event_id FROM mine)) "
    "UPDATE outbox.events e SET attempts = o.attempts, next_attempt_at = "
    "to_timestamp(o.next_ms / 1000.0), dead = o.dead, last_error = o.error, failed_at = now() "
    "FROM o WHERE e.id = o.id RETURNING e.target, e.group_id, e.dead"};

// $1 targets, $2 groups whose head became a dead letter: the oldest living event of each
// heads it now. A statement of its own, after the failures' (one statement updating a row
// twice keeps only one of the changes).
const PreparedStatement promote_sql{
    "outbox_promote",
    "UPDATE outbox.events e SET waiting = false WHERE e.waiting AND e.id IN (SELECT (SELECT x.id "
    "FROM outbox.events x WHERE x.target = g.t AND x.group_id = g.g AND NOT x.dead ORDER BY x.id "
    "LIMIT 1) FROM unnest($1::text[], $2::text[]) AS g(t, g))"};

const PreparedStatement release_sql{
    "outbox_release", "DELETE FROM outbox.claims WHERE event_id = ANY($1::int8[]) AND relay = $2"};

// $1 ids, $2 this relay, $3 now (ms), $4 the lease (ms). A claim already taken over stays so.
const PreparedStatement renew_sql{
    "outbox_renew",
    "UPDATE outbox.claims SET until = greatest(to_timestamp($3::int8 / 1000.0), "
    "statement_timestamp()) + $4::int8 * interval '1 ms' WHERE event_id = ANY($1::int8[]) AND "
    "relay = $2"};

// $1 now (ms): the next event no live claim holds.
const PreparedStatement next_due_sql{
    "outbox_next_due",
    "SELECT (extract(epoch FROM e.next_attempt_at) * 1000)::int8 FROM outbox.events e WHERE NOT "
    "e.dead AND NOT e.waiting AND NOT EXISTS (SELECT 1 FROM outbox.claims c WHERE c.event_id = "
    "e.id AND c.until > greatest(to_timestamp($1::int8 / 1000.0), statement_timestamp())) ORDER "
    "BY e.next_attempt_at, e.id LIMIT 1"};

const PreparedStatement find_sql{
    "outbox_find",
    "SELECT " OUTBOX_EVENT_COLUMNS("e") " FROM outbox.events e WHERE e.id = $1::int8"};

const PreparedStatement any_pending_sql{
    "outbox_any_pending", "SELECT EXISTS (SELECT 1 FROM outbox.events WHERE NOT dead)"};

const PreparedStatement enqueue_sql{
    "outbox_enqueue", "SELECT outbox.enqueue_bytes($1, $2, $3, $4, $5::int4, $6::jsonb)"};

const PreparedStatement all_statements[] = {
    claim_sql, claim_by_target_sql, delete_sql, fail_sql,        promote_sql, release_sql,
    renew_sql, next_due_sql,        find_sql,   any_pending_sql, enqueue_sql};

// Corrects `waiting` for the living events of $1 (every target when empty).
constexpr const char* recompute_waiting =
    "UPDATE outbox.events e SET waiting = NOT e.waiting WHERE NOT e.dead AND ($1 = '' OR "
    "e.target = $1) AND e.waiting IS DISTINCT FROM (e.group_id <> '' AND EXISTS (SELECT 1 FROM "
    "outbox.events g WHERE g.target = e.target AND g.group_id = e.group_id AND NOT g.dead AND "
    "g.id < e.id))";

struct ResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

struct ConnectionDeleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
using Connection = std::unique_ptr<PGconn, ConnectionDeleter>;

// Binary results: integers big-endian, text and bytea as their bytes.
std::int64_t get_i64(const PGresult* r, int row, int col) {
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return static_cast<std::int64_t>(v);
}
std::int32_t get_i32(const PGresult* r, int row, int col) {
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
    return static_cast<std::int32_t>(v);
}
bool get_bool(const PGresult* r, int row, int col) {
    return PQgetvalue(r, row, col)[0] != 0;
}
std::string get_bytes(const PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}

// One event as outbox.enqueue_bytes' six parameters: the body binary, the rest text.
struct EnqueueParams {
    EnqueueParams(const std::string& target, const Message& m)
        : delay(std::to_string(m.delay.count())) {
        detail::append_attributes_json(m.attributes, attributes);
        values = {target.c_str(),
                  m.body.data(),
                  m.group_id.empty() ? nullptr : m.group_id.c_str(),
                  m.deduplication_id.empty() ? nullptr : m.deduplication_id.c_str(),
                  delay.c_str(),
                  attributes.empty() ? nullptr : attributes.c_str()};
        lengths = {0, static_cast<int>(m.body.size()), 0, 0, 0, 0};
    }
    EnqueueParams(const EnqueueParams&) = delete;  // `values` points into it
    EnqueueParams& operator=(const EnqueueParams&) = delete;

    std::string delay, attributes;
    std::array<const char*, 6> values{};
    std::array<int, 6> lengths{};
    static constexpr std::array<int, 6> formats{0, 1, 0, 0, 0, 0};
};

// Thrown inside the store when the connection is gone: idempotent calls reconnect and retry.
struct ConnectionLost {
    std::string what;
};

class PostgresqlStore final : public OutboxStore {
  public:
    PostgresqlStore(std::string uri, PostgresqlStoreOptions options)
        : uri_(std::move(uri)), options_(options) {
        describe_ = detail::redact_connection_string(uri_);
        secrets_ = detail::connection_secrets(uri_);
        me_ = relay_name();
        connect();
        migrate();
    }

    ~PostgresqlStore() override { stop_listening(); }

    std::string describe() const override { return describe_; }
    std::string identity() const override { return identity_; }

    void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) override {
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

    std::string refusal(const std::string& target, const Message& message) const override {
        return detail::postgresql_refusal(target, message);
    }

    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                   const TargetBound& targets) override {
        std::vector<StoredEvent> out;
        // A connection lost after some rounds committed: what they claimed goes out now.
        retrying("claim", [&] {
            try {
                claim_events(now, limit, targets, out);
            } catch (const ConnectionLost&) {
                if (out.empty()) throw;
            } catch (const StoreError&) {
                if (out.empty()) throw;
            }
            return 0;
        });
        return out;
    }

    void settle(std::span<const EventOutcome> outcomes) override {
        if (outcomes.empty()) return;
        retrying("settle", [&] {
            settle_outcomes(outcomes);
            return 0;
        });
        for (const EventOutcome& o : outcomes) claimed_.erase(o.id);
    }

    void release_claims() override {
        if (claimed_.empty()) return;
        std::vector<EventId> ids;
        for (const auto& c : claimed_) ids.push_back(c.first);
        retrying("releasing claims", [&] {
            const std::string array = int_array(ids);
            exec_prepared(release_sql, {array.c_str(), me_.c_str()}, "releasing claims");
            return 0;
        });
        claimed_.clear();
    }

    void renew_claims(SystemTime now) override {
        std::vector<EventId> ids;
        for (const auto& [id, c] : claimed_)
            if (c.renew_at <= now) ids.push_back(id);
        if (ids.empty()) return;
        const std::string array = int_array(ids), at = std::to_string(to_ms(now));
        const std::string lease = std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.claim_lease).count());
        retrying("renewing claims", [&] {
            exec_prepared(renew_sql, {array.c_str(), me_.c_str(), at.c_str(), lease.c_str()},
                          "renewing claims");
            return 0;
        });
        for (EventId id : ids) claimed_[id].renew_at = now + options_.claim_lease / 2;
    }

    // Many relays share a PostgreSQL store: there is no lock to take.
    void lock_for_relay() override {}

    void watch_arrivals(std::function<void()> on_arrival) override {
        if (!options_.listen || listener_.joinable()) return;
        if (::pipe2(stop_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) return;  // then polling only
        on_arrival_ = std::move(on_arrival);
        listener_ = std::thread([this] { listen_loop(); });
    }

    std::optional<SystemTime> next_due() override {
        return retrying("next due", [&]() -> std::optional<SystemTime> {
            const std::string now = std::to_string(to_ms(std::chrono::system_clock::now()));
            Result r = exec_prepared(next_due_sql, {now.c_str()}, "next due");
            if (PQntuples(r.get()) == 0) return std::nullopt;
            return from_ms(get_i64(r.get(), 0, 0));
        });
    }

    std::optional<StoredEvent> find(EventId id) override {
        return retrying("find", [&]() -> std::optional<StoredEvent> {
            const std::string text = std::to_string(id);
            Result r = exec_prepared(find_sql, {text.c_str()}, "find");
            if (PQntuples(r.get()) == 0) return std::nullopt;
            return read_event(r.get(), 0);
        });
    }

    bool has_pending() override {
        return retrying("has pending", [&] {
            Result r = exec_prepared(any_pending_sql, {}, "has pending");
            return get_bool(r.get(), 0, 0);
        });
    }

    std::vector<TargetSummary> summarize() override {
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
            return out;
        });
    }

    std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) override {
        return retrying("dead letters", [&] {
            const std::string max = std::to_string(
                std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
            Result r = exec("SELECT " OUTBOX_EVENT_COLUMNS(
                                "e") " FROM outbox.events e WHERE e.dead AND ($1 = '' OR "
                                     "e.target = $1) ORDER BY e.id LIMIT $2::int8",
                            {target.c_str(), max.c_str()}, "dead letters");
            std::vector<StoredEvent> out;
            for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_event(r.get(), i));
            return out;
        });
    }

    std::uint64_t redrive(const std::string& target, SystemTime now) override {
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

    std::uint64_t purge(const std::string& target) override {
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

    std::uint64_t size_bytes() override {
        return retrying("size", [&] {
            Result r = exec("SELECT pg_total_relation_size('outbox.events')", {}, "size");
            return static_cast<std::uint64_t>(get_i64(r.get(), 0, 0));
        });
    }

  private:
    class Transaction {
      public:
        // `begin`: BEGIN and what else opens the transaction, in one round trip (the simple
        // protocol runs several statements); opened() is the last one's result, in text.
        Transaction(PostgresqlStore& store, const char* what, const char* begin = "BEGIN")
            : store_(store), what_(what) {
            opened_.reset(PQexec(store_.conn_.get(), begin));
            const ExecStatusType status =
                opened_ ? PQresultStatus(opened_.get()) : PGRES_FATAL_ERROR;
            try {
                store_.check(opened_.get(),
                             status == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, what);
            } catch (...) {
                rollback();  // BEGIN ran and a later part failed (a lock wait cut short)
                throw;
            }
        }
        const PGresult* opened() const { return opened_.get(); }
        ~Transaction() {
            if (!done_) rollback();
        }
        void rollback() {
            if (store_.conn_ && PQstatus(store_.conn_.get()) == CONNECTION_OK)
                PQclear(PQexec(store_.conn_.get(), "ROLLBACK"));
        }
        void commit() {
            store_.exec("COMMIT", {}, what_);
            done_ = true;
        }

      private:
        PostgresqlStore& store_;
        const char* what_;
        Result opened_;
        bool done_ = false;
    };

    std::string where() const { return "outbox store " + describe_; }

    static std::string relay_name() {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        std::random_device rd;
        char tag[9];
        std::snprintf(tag, sizeof tag, "%08x", rd());
        return std::string(host) + ":" + std::to_string(::getpid()) + ":" + tag;
    }

    // ---- connection -------------------------------------------------------------------

    // Defaults first, then the URI (expanded from dbname), whose own settings win: a bounded
    // connect, keepalives so a dead peer is noticed, UTF-8 text.
    Connection open_connection(const char* what) const {
        const char* keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle",
                              "keepalives_interval", "keepalives_count", "client_encoding",
                              "application_name",    "dbname",           nullptr};
        const char* values[] = {"10",   "1",      "30",         "10",   "3",
                                "UTF8", "outbox", uri_.c_str(), nullptr};
        Connection c(PQconnectdbParams(keys, values, 1));
        if (!c) throw StoreError(StoreError::Kind::io, where() + ": " + what + ": out of memory");
        if (PQstatus(c.get()) != CONNECTION_OK)
            throw StoreError(StoreError::Kind::io, where() + ": " + what + ": cannot connect: " +
                                                       trimmed(PQerrorMessage(c.get())));
        // Errors keep their text, not the server's locale; no notices on stderr.
        PQsetNoticeProcessor(
            c.get(), [](void*, const char*) {}, nullptr);
        // The store's statements take milliseconds; the planner's estimates for a claim over a
        // large backlog pass jit_above_cost, and compiling one took 500 ms.
        Result jit(PQexec(c.get(), "SET jit = off"));
        if (!jit || PQresultStatus(jit.get()) != PGRES_COMMAND_OK)
            throw StoreError(StoreError::Kind::io,
                             where() + ": " + what + ": " + trimmed(PQerrorMessage(c.get())));
        return c;
    }

    void connect() {
        conn_ = open_connection("connecting");
        prepared_ = false;
    }

    void drop_connection() {
        conn_.reset();
        prepared_ = false;
    }

    void ensure_connected(const char* what) {
        if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
            drop_connection();
            try {
                connect();
            } catch (const StoreError& e) {
                throw StoreError(e.kind(), std::string(e.what()) + " (during " + what + ")");
            }
        }
        // Whatever went wrong last, no transaction is left open to fail every later statement.
        if (PQtransactionStatus(conn_.get()) != PQTRANS_IDLE)
            PQclear(PQexec(conn_.get(), "ROLLBACK"));
        if (!prepared_ && schema_ready_) {
            for (const PreparedStatement& s : all_statements) {
                Result r(PQprepare(conn_.get(), s.name, s.sql, 0, nullptr));
                check(r.get(), PGRES_COMMAND_OK, what);
            }
            prepared_ = true;
        }
    }

    // Runs `f` on a live connection; a connection lost on the way is made again and `f` run
    // once more (the calls that use this are idempotent).
    template <class F>
    auto retrying(const char* what, F&& f) -> decltype(f()) {
        for (int attempt = 0;; ++attempt) {
            try {
                ensure_connected(what);
                return f();
            } catch (const ConnectionLost& lost) {
                drop_connection();
                if (attempt > 0)
                    throw StoreError(StoreError::Kind::io,
                                     where() + ": " + what + ": " + lost.what);
            }
        }
    }

    // libpq's messages end in a newline and may hold more lines ("\n\tIs the server
    // running..."): one line, for logs, and never the password (libpq quotes the part of a
    // URI it cannot parse).
    std::string trimmed(const char* message) const { return scrub(one_line(message)); }

    std::string scrub(std::string text) const {
        for (const std::string& secret : secrets_) {
            if (secret.empty()) continue;
            for (auto at = text.find(secret); at != std::string::npos;
                 at = text.find(secret, at + 3))
                text.replace(at, secret.size(), "***");
        }
        return text;
    }

    static std::string one_line(const char* message) {
        std::string s;
        for (const char* p = message ? message : ""; *p != '\0'; ++p) {
            if (*p == '\n' || *p == '\t') {
                if (!s.empty() && s.back() != ' ') s.push_back(' ');
            } else {
                s.push_back(*p);
            }
        }
        while (!s.empty() && s.back() == ' ') s.pop_back();
        return s;
    }

    // Throws for a result that is not `expected`: ConnectionLost when the connection went,
    // StoreError with PostgreSQL's message otherwise.
    void check(const PGresult* r, ExecStatusType expected, const char* what) const {
        const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (status == expected) return;
        const std::string message =
            trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_.get()));
        if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)
            throw ConnectionLost{message.empty() ? "the connection was lost" : message};
        const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
        const std::string code = state ? state : "";
        const StoreError::Kind kind =
            code == "53100" ? StoreError::Kind::full
            : code == "40001" || code == "40P01" || code.rfind("55", 0) == 0
                ? StoreError::Kind::busy
                : StoreError::Kind::io;
        throw StoreError(kind, where() + ": " + what + ": " + message);
    }

    // Text parameters, binary results.
    Result exec(const char* sql, std::initializer_list<const char*> params, const char* what) {
        std::vector<const char*> values(params);
        Result r(PQexecParams(conn_.get(), sql, static_cast<int>(values.size()), nullptr,
                              values.data(), nullptr, nullptr, 1));
        const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        check(r.get(), status == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, what);
        return r;
    }

    Result exec_prepared(const PreparedStatement& s, std::initializer_list<const char*> params,
                         const char* what) {
        std::vector<const char*> values(params);
        Result r(PQexecPrepared(conn_.get(), s.name, static_cast<int>(values.size()), values.data(),
                                nullptr, nullptr, 1));
        const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        check(r.get(), status == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, what);
        return r;
    }

    // ---- schema -----------------------------------------------------------------------

    // A database already at this version needs nothing created (a relay's role may lack the
    // CREATE privilege); otherwise the schema is made under a lock, as processes may start
    // together.
    void migrate() {
        retrying("reading the schema", [&] {
            Result exists =
                exec("SELECT to_regclass('outbox.meta') IS NOT NULL", {}, "reading the schema");
            if (!get_bool(exists.get(), 0, 0)) return 0;
            Result v = exec(
                "SELECT (SELECT value FROM outbox.meta WHERE key = "
                "'schema_version'), (SELECT value FROM outbox.meta WHERE key = "
                "'identity')",
                {}, "reading the schema");
            if (PQgetisnull(v.get(), 0, 0) || PQgetisnull(v.get(), 0, 1)) return 0;
            const int version = std::atoi(get_bytes(v.get(), 0, 0).c_str());
            if (version > schema_version) throw newer_schema(version);
            if (version == schema_version) {
                identity_ = get_bytes(v.get(), 0, 1);
                schema_ready_ = true;
            }
            return 0;
        });
        if (schema_ready_) return add_target_index();
        retrying("creating the schema", [&] {
            Transaction tx(*this, "creating the schema", begin_migrating);
            exec("CREATE SCHEMA IF NOT EXISTS outbox", {}, "creating the schema");
            exec(
                "CREATE TABLE IF NOT EXISTS outbox.meta(key text PRIMARY KEY, value text NOT "
                "NULL)",
                {}, "creating the schema");
            Result v = exec("SELECT value FROM outbox.meta WHERE key = 'schema_version'", {},
                            "reading the schema version");
            int version = 0;
            if (PQntuples(v.get()) == 1) version = std::atoi(get_bytes(v.get(), 0, 0).c_str());
            if (version > schema_version) throw newer_schema(version);
            if (version == 0) {
                Result r(PQexec(conn_.get(), schema));  // several statements: simple protocol
                check(r.get(), PGRES_COMMAND_OK, "creating the schema");
                exec(
                    "INSERT INTO outbox.meta VALUES ('schema_version', $1), ('identity', "
                    "substr(replace(gen_random_uuid()::text, '-', ''), 1, 16))",
                    {std::to_string(schema_version).c_str()}, "creating the schema");
                Result indexed(PQexec(conn_.get(), target_index));
                check(indexed.get(), PGRES_COMMAND_OK, "creating the schema");
            }
            Result id = exec("SELECT value FROM outbox.meta WHERE key = 'identity'", {},
                             "reading the store's identity");
            if (PQntuples(id.get()) != 1)
                throw StoreError(StoreError::Kind::corrupt,
                                 where() + ": outbox.meta has no identity row");
            identity_ = get_bytes(id.get(), 0, 0);
            tx.commit();
            schema_ready_ = true;
            return 0;
        });
        add_target_index();  // made meanwhile by an outbox of the first release
    }

    // A database made by the first release lacks events_target_ready. It is added on the way
    // when this role may (it owns outbox.events) and the writers let it have the lock within
    // 2 s; writes then wait while it is built (about a second per million events). Otherwise
    // the store goes on without it: claims passing over a full target are slower, not wrong,
    // and the next open tries again.
    void add_target_index() {
        retrying("adding an index", [&] {
            Result indexed = exec(target_index_exists, {}, "reading the schema");
            if (get_bool(indexed.get(), 0, 0)) return 0;
            try {
                Transaction tx(*this, "adding an index", "BEGIN; SET LOCAL lock_timeout = '2s'");
                Result r(PQexec(conn_.get(), target_index));
                check(r.get(), PGRES_COMMAND_OK, "adding an index");
                tx.commit();
            } catch (const StoreError&) {
            }
            return 0;
        });
    }

    StoreError newer_schema(int version) const {
        return StoreError(StoreError::Kind::io,
                          where() + ": its outbox schema is version " + std::to_string(version) +
                              ", newer than this outbox (" + std::to_string(schema_version) +
                              "): upgrade outbox");
    }

    // ---- enqueue ----------------------------------------------------------------------

    // One transaction, sent as pipelines of a few hundred statements (one round trip each),
    // small enough that neither side's socket buffer fills while the other is still writing.
    void insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids,
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
    void lock_groups(std::span<const NewEvent> events) {
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

    // ---- claims and settlements -------------------------------------------------------

    void claim_events(SystemTime now, std::size_t limit, const TargetBound& targets,
                      std::vector<StoredEvent>& out) {
        std::unordered_map<std::string, std::size_t> taken;  // per target, by this claim
        const std::string due = std::to_string(to_ms(now));
        const std::string lease = std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.claim_lease).count());
        // Events found behind their group's head are marked and the claim goes on, so a long
        // group costs one pass, not one per claim.
        // Another relay marking holds the marks lock: when a window held only events behind
        // their heads, the next round waits for it (briefly) rather than the relay polling.
        bool wait_for_marks = false;
        for (int round = 0; round < 16 && out.size() < limit; ++round) {
            const std::size_t before = out.size();
            // The bound per target, less what earlier rounds took. While every known target
            // has room, one claim in due order takes no more than the least of them (so none
            // goes past its share, and nothing is read only to be left); once one has little or
            // none, the claim goes target by target and passes over it.
            std::string skip = "{", known = "{", rooms = "{";
            std::size_t asked = std::min<std::size_t>(limit - out.size(), 1u << 30);
            if (targets.per_target != 0) {
                std::unordered_map<std::string, std::size_t> left;
                for (const auto& [target, n] : targets.out) left[target] = targets.room(target);
                for (const auto& [target, n] : taken) {
                    const std::size_t r = targets.room(target);
                    left[target] = r > n ? r - n : 0;
                }
                std::size_t least = targets.per_target;  // a target not out yet
                for (const auto& [target, r] : left) {
                    // Little room left: passed over, rather than claiming a few at a time.
                    if (r == 0 || r < targets.per_target / 4) {
                        if (skip.size() > 1) skip.push_back(',');
                        detail::append_array_text(skip, target);
                        continue;
                    }
                    least = std::min(least, r);
                    if (known.size() > 1) {
                        known.push_back(',');
                        rooms.push_back(',');
                    }
                    detail::append_array_text(known, target);
                    rooms += std::to_string(std::min(r, asked));  // fits a bigint
                }
                if (skip.size() == 1) asked = std::min(asked, least);
            }
            const bool by_target = skip.size() > 1;
            for (std::string* s : {&skip, &known, &rooms}) s->push_back('}');
            const std::string count = std::to_string(asked),
                              per_target = std::to_string(std::min(targets.per_target, asked));
            Transaction tx(*this, "claim", wait_for_marks ? begin_claim_waiting : begin_claim);
            const bool may_mark = PQgetvalue(tx.opened(), 0, 0)[0] == 't';
            const char* mark = may_mark ? "t" : "f";
            Result r =
                by_target
                    ? exec_prepared(
                          claim_by_target_sql,
                          {due.c_str(), count.c_str(), lease.c_str(), me_.c_str(), mark,
                           skip.c_str(), known.c_str(), rooms.c_str(), per_target.c_str()},
                          "claim")
                    : exec_prepared(claim_sql,
                                    {due.c_str(), count.c_str(), lease.c_str(), me_.c_str(), mark},
                                    "claim");
            tx.commit();
            const int rows = PQntuples(r.get());
            const int behind_col = PQfnumber(r.get(), "behind"),
                      ours_col = PQfnumber(r.get(), "ours"), cap_col = PQfnumber(r.get(), "cap");
            const auto seen = static_cast<std::size_t>(rows);
            std::size_t behind = 0;
            // Target by target: whether some target gave all its cap (it may have more).
            bool capped = false;
            if (by_target) {
                std::unordered_map<std::string_view, std::size_t> per_target_seen;
                for (int i = 0; i < rows; ++i) {
                    const std::string_view target(PQgetvalue(r.get(), i, 1),
                                                  PQgetlength(r.get(), i, 1));
                    const auto cap = static_cast<std::size_t>(get_i64(r.get(), i, cap_col));
                    capped |= ++per_target_seen[target] >= cap;
                }
            }
            for (int i = 0; i < rows; ++i) {
                if (get_bool(r.get(), i, behind_col)) {
                    ++behind;
                    continue;
                }
                if (!get_bool(r.get(), i, ours_col)) continue;  // another relay's, just claimed
                StoredEvent e = read_event(r.get(), i);
                ++taken[e.target];
                claimed_[e.id] = Claim{!e.message.group_id.empty(), now + options_.claim_lease / 2};
                out.push_back(std::move(e));
            }
            // Another round when this one passed over due events it may take next time: marked
            // ones behind their heads, another relay's, a target's beyond its room. (Target by
            // target, a round stops short of `asked` at each target's cap.)
            if (seen < asked && !capped) break;  // nothing more is due
            const std::size_t passed = seen - (out.size() - before);
            if (passed == 0) continue;       // a round held to a target's room: the next goes on
            if (behind != 0 && !may_mark) {  // unmarked, the same ones would come back
                if (out.size() != before || wait_for_marks) break;
                wait_for_marks = true;
            }
        }
    }

    void settle_outcomes(std::span<const EventOutcome> outcomes) {
        std::vector<EventId> delivered;
        std::vector<const EventOutcome*> failed;
        bool grouped = false;
        for (const EventOutcome& o : outcomes) {
            auto it = claimed_.find(o.id);
            grouped |= it == claimed_.end() || it->second.grouped;  // unknown: assume a group
            if (o.kind == EventOutcome::Kind::delivered)
                delivered.push_back(o.id);
            else
                failed.push_back(&o);
        }
        // A new group head is promoted only under the marks lock (see the top of the file).
        Transaction tx(*this, "settle", grouped ? begin_grouped_settle : begin_settle);
        if (!delivered.empty()) {
            const std::string ids = int_array(delivered);
            exec_prepared(delete_sql, {ids.c_str()}, "settle");
        }
        if (!failed.empty()) {
            std::string ids = "{", attempts = "{", next = "{", dead = "{", errors = "{";
            for (const EventOutcome* o : failed) {
                const char* sep = ids.size() > 1 ? "," : "";
                ids += sep + std::to_string(o->id);
                attempts += sep + std::to_string(o->attempts);
                next += sep + std::to_string(to_ms(o->next_attempt_at));
                dead += sep + std::string(o->kind == EventOutcome::Kind::dead ? "t" : "f");
                errors += sep;
                detail::append_array_text(errors, o->error);
            }
            for (std::string* s : {&ids, &attempts, &next, &dead, &errors}) s->push_back('}');
            Result r = exec_prepared(fail_sql,
                                     {ids.c_str(), attempts.c_str(), next.c_str(), dead.c_str(),
                                      errors.c_str(), me_.c_str()},
                                     "settle");
            std::string targets = "{", groups = "{";
            for (int i = 0; i < PQntuples(r.get()); ++i) {
                if (!get_bool(r.get(), i, 2) || PQgetlength(r.get(), i, 1) == 0) continue;
                if (targets.size() > 1) {
                    targets.push_back(',');
                    groups.push_back(',');
                }
                detail::append_array_text(targets, get_bytes(r.get(), i, 0));
                detail::append_array_text(groups, get_bytes(r.get(), i, 1));
            }
            if (targets.size() > 1) {
                targets.push_back('}');
                groups.push_back('}');
                exec_prepared(promote_sql, {targets.c_str(), groups.c_str()}, "settle");
            }
        }
        tx.commit();
    }

    static std::string int_array(const std::vector<EventId>& ids) {
        std::string s = "{";
        for (EventId id : ids) {
            if (s.size() > 1) s.push_back(',');
            s += std::to_string(id);
        }
        s.push_back('}');
        return s;
    }

    StoredEvent read_event(const PGresult* r, int row) const {
        StoredEvent e;
        e.id = get_i64(r, row, 0);
        e.target = get_bytes(r, row, 1);
        e.message.group_id = get_bytes(r, row, 2);
        e.message.body = get_bytes(r, row, 3);
        if (!PQgetisnull(r, row, 4)) {
            std::string why;
            if (!detail::parse_attributes_json(get_bytes(r, row, 4), e.message.attributes, why)) {
                e.damaged = true;
                e.last_error = "its attributes cannot be read: " + why;
            }
        }
        e.message.deduplication_id = get_bytes(r, row, 5);
        e.message.delay = std::chrono::seconds(get_i32(r, row, 6));
        e.enqueued_at = from_ms(get_i64(r, row, 7));
        e.next_attempt_at = from_ms(get_i64(r, row, 8));
        e.attempts = static_cast<std::uint32_t>(get_i32(r, row, 9));
        e.dead = get_bool(r, row, 10);
        if (!e.damaged) e.last_error = get_bytes(r, row, 11);
        return e;
    }

    // ---- LISTEN/NOTIFY ----------------------------------------------------------------

    // Its own connection and thread: waits for notifications and the stop pipe; a lost
    // connection is made again after a second (polling covers the gap).
    void listen_loop() {
        Connection c;
        while (true) {
            if (!c) {
                try {
                    c = open_connection("listening");
                    Result r(PQexec(c.get(), (std::string("LISTEN ") + notify_channel).c_str()));
                    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) c.reset();
                } catch (const StoreError&) {
                    c.reset();
                }
                if (c && on_arrival_) on_arrival_();  // what arrived while we were away
            }
            pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {c ? PQsocket(c.get()) : -1, POLLIN, 0}};
            const int n = ::poll(fds, 2, c ? -1 : 1000);
            if (n < 0 && errno != EINTR) return;
            if (fds[0].revents != 0) return;  // stopping
            if (!c) continue;
            if (fds[1].revents != 0) {
                if (!PQconsumeInput(c.get())) {
                    c.reset();
                    continue;
                }
                bool arrived = false;
                while (PGnotify* note = PQnotifies(c.get())) {
                    arrived = true;
                    PQfreemem(note);
                }
                if (arrived && on_arrival_) on_arrival_();
            }
        }
    }

    void stop_listening() {
        if (listener_.joinable()) {
            [[maybe_unused]] const auto w = ::write(stop_pipe_[1], "x", 1);
            listener_.join();
        }
        for (int& fd : stop_pipe_)
            if (fd >= 0) ::close(std::exchange(fd, -1));
    }

    std::string uri_;
    PostgresqlStoreOptions options_;
    std::string describe_;
    std::vector<std::string> secrets_;  // the password as written and as libpq reads it
    std::string me_;                    // this relay's name in outbox.claims: host:pid:random
    std::string identity_;
    Connection conn_;
    bool prepared_ = false;
    bool schema_ready_ = false;  // statements are prepared once it exists
    struct Claim {
        bool grouped = false;
        SystemTime renew_at{};  // half its lease, by the relay's clock
    };
    std::unordered_map<EventId, Claim> claimed_;  // our claims not yet settled
    std::thread listener_;
    int stop_pipe_[2] = {-1, -1};
    std::function<void()> on_arrival_;
};

bool is_postgresql_uri(const std::string& s) {
    return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

}  // namespace

OutboxStorePtr open_postgresql_store(const std::string& uri, PostgresqlStoreOptions options) {
    return std::make_unique<PostgresqlStore>(uri, options);
}

OutboxStorePtr open_store(const std::string& location) {
    if (is_postgresql_uri(location)) return open_postgresql_store(location);
    const std::string path = location.rfind("sqlite:", 0) == 0 ? location.substr(7) : location;
    return open_sqlite_store(path);
}

EventId enqueue_in_transaction(::pg_conn* connection, const std::string& target,
                               const Message& message) {
    if (std::string why = detail::postgresql_refusal(target, message); !why.empty())
        throw StoreError(StoreError::Kind::io, "outbox.enqueue_bytes: the event: " + why);
    const EnqueueParams p(target, message);
    Result r(PQexecParams(connection, enqueue_sql.sql, 6, nullptr, p.values.data(),
                          p.lengths.data(), EnqueueParams::formats.data(), 1));
    if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) {
        std::string message_text = r ? PQresultErrorMessage(r.get()) : PQerrorMessage(connection);
        while (!message_text.empty() && message_text.back() == '\n') message_text.pop_back();
        throw StoreError(StoreError::Kind::io, "outbox.enqueue_bytes: " + message_text);
    }
    return get_i64(r.get(), 0, 0);
}

}  // namespace outbox
