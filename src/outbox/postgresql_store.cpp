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

#include "outbox/postgresql_store_impl.hpp"
#include "outbox/postgresql_text.hpp"

#include <libpq-fe.h>
#include <simdjson.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

namespace outbox::detail::postgresql {

PostgresqlStore::PostgresqlStore(std::string uri, PostgresqlStoreOptions options)
    : uri_(std::move(uri)), options_(options) {
    describe_ = detail::redact_connection_string(uri_);
    secrets_ = detail::connection_secrets(uri_);
    if (std::string why = detail::uri_user_part_problem(uri_); !why.empty()) {
        describe_ = detail::redact_user_part_loosely(uri_);  // no piece of the password shown
        throw StoreError(StoreError::Kind::io, where() + ": " + why);
    }
    me_ = relay_name();
    connect();
    migrate();
}

std::string PostgresqlStore::relay_name() {
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
Connection PostgresqlStore::open_connection(const char* what) const {
    const char* keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "client_encoding",
                          "application_name",    "dbname",           nullptr};
    const char* values[] = {"10", "1", "30", "10", "3", "UTF8", "outbox", uri_.c_str(), nullptr};
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

void PostgresqlStore::connect() {
    conn_ = open_connection("connecting");
    prepared_ = false;
}

void PostgresqlStore::drop_connection() {
    conn_.reset();
    prepared_ = false;
}

void PostgresqlStore::ensure_connected(const char* what) {
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
        drop_connection();
        try {
            connect();
        } catch (const StoreError& e) {
            throw StoreError(e.kind(), std::string(e.what()) + " (during " + what + ")");
        }
    }
    // Whatever went wrong last, no transaction is left open to fail every later statement.
    if (PQtransactionStatus(conn_.get()) != PQTRANS_IDLE) PQclear(PQexec(conn_.get(), "ROLLBACK"));
    if (!prepared_ && schema_ready_) {
        for (const PreparedStatement& s : all_statements) {
            Result r(PQprepare(conn_.get(), s.name, s.sql, 0, nullptr));
            check(r.get(), PGRES_COMMAND_OK, what);
        }
        prepared_ = true;
    }
}

// libpq's messages end in a newline and may hold more lines ("\n\tIs the server
// running..."): one line, for logs, and never the password (libpq quotes the part of a
// URI it cannot parse).
std::string PostgresqlStore::trimmed(const char* message) const {
    return scrub(one_line(message));
}

std::string PostgresqlStore::scrub(std::string text) const {
    return detail::scrub_secrets(std::move(text), secrets_);
}

std::string PostgresqlStore::one_line(const char* message) {
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
void PostgresqlStore::check(const PGresult* r, ExecStatusType expected, const char* what) const {
    const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == expected) return;
    const std::string message = trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_.get()));
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)
        throw ConnectionLost{message.empty() ? "the connection was lost" : message};
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string code = state ? state : "";
    const StoreError::Kind kind = code == "53100" ? StoreError::Kind::full
                                  : code == "40001" || code == "40P01" || code.rfind("55", 0) == 0
                                      ? StoreError::Kind::busy
                                      : StoreError::Kind::io;
    throw StoreError(kind, where() + ": " + what + ": " + message);
}

// Text parameters, binary results.
Result PostgresqlStore::exec(const char* sql, std::initializer_list<const char*> params,
                             const char* what) {
    std::vector<const char*> values(params);
    Result r(PQexecParams(conn_.get(), sql, static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 1));
    const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    check(r.get(), status == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, what);
    return r;
}

Result PostgresqlStore::exec_prepared(const PreparedStatement& s,
                                      std::initializer_list<const char*> params, const char* what) {
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
void PostgresqlStore::migrate() {
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
    if (schema_ready_) {
        add_target_index();
        return add_breakers_table();
    }
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
    add_breakers_table();
}

// As the target index: made when this role may. Without it, or without the privileges on it
// (a role granted ON ALL TABLES before it was made), breakers are not kept or not shown.
void PostgresqlStore::add_breakers_table() {
    retrying("adding a table", [&] {
        Result there = exec(breakers_table_exists, {}, "reading the schema");
        if (!get_bool(there.get(), 0, 0)) try {
                Transaction tx(*this, "adding a table", "BEGIN; SET LOCAL lock_timeout = '2s'");
                Result r(PQexec(conn_.get(), breakers_table));
                check(r.get(), PGRES_COMMAND_OK, "adding a table");
                tx.commit();
            } catch (const StoreError&) {
            }
        Result now = exec(breakers_table_access, {}, "reading the schema");
        breakers_readable_ = get_bool(now.get(), 0, 0);
        breakers_writable_ = get_bool(now.get(), 0, 1);
        return 0;
    });
}

// A database made by the first release lacks events_target_ready. It is added on the way
// when this role may (it owns outbox.events) and the writers let it have the lock within
// 2 s; writes then wait while it is built (about a second per million events). Otherwise
// the store goes on without it: claims passing over a full target are slower, not wrong,
// and the next open tries again.
void PostgresqlStore::add_target_index() {
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

StoreError PostgresqlStore::newer_schema(int version) const {
    return StoreError(StoreError::Kind::io,
                      where() + ": its outbox schema is version " + std::to_string(version) +
                          ", newer than this outbox (" + std::to_string(schema_version) +
                          "): upgrade outbox");
}

// ---- LISTEN/NOTIFY ----------------------------------------------------------------

void PostgresqlStore::watch_arrivals(std::function<void()> on_arrival) {
    if (!options_.listen || listener_.joinable()) return;
    if (::pipe2(stop_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) return;  // then polling only
    on_arrival_ = std::move(on_arrival);
    listener_ = std::thread([this] { listen_loop(); });
}

// Its own connection and thread: waits for notifications and the stop pipe; a lost
// connection is made again after a second (polling covers the gap).
void PostgresqlStore::listen_loop() {
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

void PostgresqlStore::stop_listening() {
    if (listener_.joinable()) {
        [[maybe_unused]] const auto w = ::write(stop_pipe_[1], "x", 1);
        listener_.join();
    }
    for (int& fd : stop_pipe_)
        if (fd >= 0) ::close(std::exchange(fd, -1));
}

}  // namespace outbox::detail::postgresql

namespace outbox {

using detail::postgresql::enqueue_sql;
using detail::postgresql::EnqueueParams;
using detail::postgresql::get_i64;
using detail::postgresql::PostgresqlStore;
using detail::postgresql::Result;

namespace {

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
