// The transactional outbox on PostgreSQL: the application records events in its own
// transactions (SQL `outbox.enqueue(...)` or enqueue_in_transaction below), and relays on any
// number of processes and machines share the store. Part of outbox::postgresql (libpq).
// See docs/outbox-postgresql.md.
#pragma once

#include <outbox/outbox_store.hpp>

#include <chrono>
#include <string>

extern "C" {
struct pg_conn;  // libpq's PGconn
}

namespace outbox {

struct PostgresqlStoreOptions {
    /// How long a relay's claim on an event lasts. A relay that dies (SIGKILL, machine lost)
    /// has its events taken over by the others when it runs out, so keep it above the longest
    /// delivery (the destinations' deadlines) and below what a stall may cost.
    std::chrono::seconds claim_lease{300};
    /// Wake the relay at once when an event is committed (LISTEN/NOTIFY on its own
    /// connection); polling (OutboxConfig::poll_interval) stays the fallback.
    bool listen = true;
};

/// Opens the store in the database `uri` names (postgresql://user@host:port/db?..., any
/// libpq connection URI or "key=value" string). Creates or migrates the `outbox` schema, under
/// a lock, so several processes may start at once; a database already at this version needs no
/// CREATE privilege. Unless the URI says otherwise: connect_timeout=10, TCP keepalives,
/// client_encoding=UTF8. Throws StoreError naming the database (never its password) and the
/// cause.
OutboxStorePtr open_postgresql_store(const std::string& uri, PostgresqlStoreOptions options = {});

/// A store by its location: a postgresql:// (or postgres://) URI opens the PostgreSQL store,
/// anything else is the path of an SQLite file (sqlite:PATH too).
OutboxStorePtr open_store(const std::string& location);

/// Records one event inside the transaction the application has open on `connection` (it
/// commits or rolls back with the application's own data): what SQL's
/// `SELECT outbox.enqueue_bytes(...)` does, from C++. The schema must exist (any
/// open_postgresql_store made it). Returns the event's id; throws StoreError with
/// PostgreSQL's message (the transaction is then aborted, as with any failed statement).
EventId enqueue_in_transaction(::pg_conn* connection, const std::string& target,
                               const Message& message);

}  // namespace outbox
