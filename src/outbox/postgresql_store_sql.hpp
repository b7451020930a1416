// The PostgreSQL store's SQL: its schema, advisory lock keys and prepared statements, shared
// by the store's .cpp files. Not API.
#pragma once

namespace outbox::detail::postgresql {

inline constexpr int schema_version = 1;
// Advisory lock keys (two-int form): the first names outbox's use, so an application's own
// advisory locks do not meet them. 'obxs' schema changes, 'obxm' group marks, 'obxg' groups.
inline constexpr const char* begin_migrating = "BEGIN; SELECT pg_advisory_xact_lock(1868724339, 0)";
inline constexpr const char* begin_marking = "BEGIN; SELECT pg_advisory_xact_lock(1868724333, 0)";
// Claims and settlements commit without waiting for the disk: one lost in a database crash
// only means the event is delivered again (at least once holds). Enqueues, redrives and purges
// keep the server's own setting.
inline constexpr const char* begin_claim =
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "SELECT pg_try_advisory_xact_lock(1868724333, 0)";
inline constexpr const char* begin_claim_waiting =
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "SELECT true FROM (SELECT pg_advisory_xact_lock(1868724333, 0)) AS locked";
inline constexpr const char* begin_settle = "BEGIN; SET LOCAL synchronous_commit = off";
inline constexpr const char* begin_grouped_settle =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock(1868724333, 0)";
inline constexpr const char* notify_channel = "outbox_events";
// The same key outbox.enqueue_bytes computes for a group.
inline constexpr const char* lock_groups_sql =
    "SELECT count(pg_advisory_xact_lock(1868724327, k)) FROM (SELECT DISTINCT "
    "hashtext(length(t)::text || ':' || t || g) AS k FROM unnest($1::text[], $2::text[]) AS "
    "x(t, g) ORDER BY k) keys";

inline constexpr const char* schema = R"sql(
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
// A relay's circuit breakers for targets it reports not healthy, for `outbox inspect`: a row
// per target and relay (many relays share a store), made on the way for a database of the
// first release (as the target index), read only when it is there.
inline constexpr const char* breakers_table_exists =
    "SELECT to_regclass('outbox.breakers') IS NOT NULL";
inline constexpr const char* breakers_table = R"sql(
CREATE TABLE IF NOT EXISTS outbox.breakers(
    target text NOT NULL,
    relay text NOT NULL,
    health text NOT NULL,
    consecutive_failures integer NOT NULL,
    failing_since timestamptz NOT NULL,
    next_probe_at timestamptz,
    last_error text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, relay));
COMMENT ON TABLE outbox.breakers IS
    'Circuit breakers of running relays for targets that fail: see outbox inspect';
)sql";
inline constexpr const char* save_breaker_sql =
    "INSERT INTO outbox.breakers(target, relay, health, consecutive_failures, failing_since, "
    "next_probe_at, last_error) VALUES ($1, $2, $3, $4::int4, to_timestamp($5::int8 / 1000.0), "
    "to_timestamp($6::int8 / 1000.0), $7) ON CONFLICT (target, relay) DO UPDATE SET health = "
    "excluded.health, consecutive_failures = excluded.consecutive_failures, failing_since = "
    "excluded.failing_since, next_probe_at = excluded.next_probe_at, last_error = "
    "excluded.last_error, updated_at = now()";
// Whether this role may read, and write, the table (false, false without it; a list of
// privileges in one call would be true with any of them).
inline constexpr const char* breakers_table_access =
    "SELECT coalesce(has_table_privilege(to_regclass('outbox.breakers'), 'SELECT'), false), "
    "coalesce(has_table_privilege(to_regclass('outbox.breakers'), 'SELECT') AND "
    "has_table_privilege(to_regclass('outbox.breakers'), 'INSERT') AND "
    "has_table_privilege(to_regclass('outbox.breakers'), 'UPDATE') AND "
    "has_table_privilege(to_regclass('outbox.breakers'), 'DELETE'), false)";
// A running relay rewrites its rows' updated_at every minute (as it renews its claims), so
// rows older than 10 minutes are a dead relay's: not shown, and dropped by the next to start.
inline constexpr const char* read_breakers_sql =
    "SELECT DISTINCT ON (target) target, health, consecutive_failures::int8, (extract(epoch FROM "
    "failing_since) * 1000)::int8, (extract(epoch FROM next_probe_at) * 1000)::int8, last_error "
    "FROM outbox.breakers WHERE updated_at > now() - interval '10 minutes' ORDER BY target, "
    "updated_at DESC";
inline constexpr const char* forget_breakers_sql =
    "DELETE FROM outbox.breakers WHERE relay = $1 OR updated_at < now() - interval '10 minutes'";

inline constexpr const char* target_index_exists =
    "SELECT to_regclass('outbox.events_target_ready') IS NOT NULL";
inline constexpr const char* target_index = R"sql(
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
inline const PreparedStatement claim_sql{
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
inline const PreparedStatement claim_by_target_sql{
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
inline const PreparedStatement delete_sql{
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
inline const PreparedStatement fail_sql{
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
inline const PreparedStatement promote_sql{
    "outbox_promote",
    "UPDATE outbox.events e SET waiting = false WHERE e.waiting AND e.id IN (SELECT (SELECT x.id "
    "FROM outbox.events x WHERE x.target = g.t AND x.group_id = g.g AND NOT x.dead ORDER BY x.id "
    "LIMIT 1) FROM unnest($1::text[], $2::text[]) AS g(t, g))"};

inline const PreparedStatement release_sql{
    "outbox_release", "DELETE FROM outbox.claims WHERE event_id = ANY($1::int8[]) AND relay = $2"};

// $1 ids, $2 this relay, $3 now (ms), $4 the lease (ms). A claim already taken over stays so.
inline const PreparedStatement renew_sql{
    "outbox_renew",
    "UPDATE outbox.claims SET until = greatest(to_timestamp($3::int8 / 1000.0), "
    "statement_timestamp()) + $4::int8 * interval '1 ms' WHERE event_id = ANY($1::int8[]) AND "
    "relay = $2"};

// $1 now (ms): the next event no live claim holds.
inline const PreparedStatement next_due_sql{
    "outbox_next_due",
    "SELECT (extract(epoch FROM e.next_attempt_at) * 1000)::int8 FROM outbox.events e WHERE NOT "
    "e.dead AND NOT e.waiting AND NOT EXISTS (SELECT 1 FROM outbox.claims c WHERE c.event_id = "
    "e.id AND c.until > greatest(to_timestamp($1::int8 / 1000.0), statement_timestamp())) ORDER "
    "BY e.next_attempt_at, e.id LIMIT 1"};

inline const PreparedStatement find_sql{
    "outbox_find",
    "SELECT " OUTBOX_EVENT_COLUMNS("e") " FROM outbox.events e WHERE e.id = $1::int8"};

inline const PreparedStatement any_pending_sql{
    "outbox_any_pending", "SELECT EXISTS (SELECT 1 FROM outbox.events WHERE NOT dead)"};

inline const PreparedStatement enqueue_sql{
    "outbox_enqueue", "SELECT outbox.enqueue_bytes($1, $2, $3, $4, $5::int4, $6::jsonb)"};

inline const PreparedStatement all_statements[] = {
    claim_sql, claim_by_target_sql, delete_sql, fail_sql,        promote_sql, release_sql,
    renew_sql, next_due_sql,        find_sql,   any_pending_sql, enqueue_sql};

// Corrects `waiting` for the living events of $1 (every target when empty).
inline constexpr const char* recompute_waiting =
    "UPDATE outbox.events e SET waiting = NOT e.waiting WHERE NOT e.dead AND ($1 = '' OR "
    "e.target = $1) AND e.waiting IS DISTINCT FROM (e.group_id <> '' AND EXISTS (SELECT 1 FROM "
    "outbox.events g WHERE g.target = e.target AND g.group_id = e.group_id AND NOT g.dead AND "
    "g.id < e.id))";

}  // namespace outbox::detail::postgresql
