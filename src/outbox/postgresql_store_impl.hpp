// The PostgreSQL store's class and libpq helpers, shared by its .cpp files
// (postgresql_store.cpp, postgresql_store_claims.cpp, postgresql_store_events.cpp). Not API.
#pragma once

#include <outbox/postgresql_store.hpp>

#include "outbox/postgresql_store_sql.hpp"
#include "outbox/postgresql_text.hpp"

#include <libpq-fe.h>

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace outbox::detail::postgresql {

struct ResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

struct ConnectionDeleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
using Connection = std::unique_ptr<PGconn, ConnectionDeleter>;

// Binary results: integers big-endian, text and bytea as their bytes.
inline std::int64_t get_i64(const PGresult* r, int row, int col) {
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return static_cast<std::int64_t>(v);
}
inline std::int32_t get_i32(const PGresult* r, int row, int col) {
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
    return static_cast<std::int32_t>(v);
}
inline bool get_bool(const PGresult* r, int row, int col) {
    return PQgetvalue(r, row, col)[0] != 0;
}
inline std::string get_bytes(const PGresult* r, int row, int col) {
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
    PostgresqlStore(std::string uri, PostgresqlStoreOptions options);

    ~PostgresqlStore() override { stop_listening(); }

    std::string describe() const override { return describe_; }
    std::string identity() const override { return identity_; }

    void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) override;

    std::string refusal(const std::string& target, const Message& message) const override {
        return detail::postgresql_refusal(target, message);
    }

    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                   const TargetBound& targets) override;
    void settle(std::span<const EventOutcome> outcomes) override;
    void release_claims() override;
    void renew_claims(SystemTime now) override;

    // Many relays share a PostgreSQL store: there is no lock to take.
    void lock_for_relay() override {}

    void watch_arrivals(std::function<void()> on_arrival) override;
    std::optional<SystemTime> next_due() override;
    std::optional<StoredEvent> find(EventId id) override;
    bool has_pending() override;
    std::vector<TargetSummary> summarize() override;
    void save_breaker(const TargetBreakerState& state) override;
    void forget_breakers() override;
    std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) override;
    std::uint64_t redrive(const std::string& target, SystemTime now) override;
    std::uint64_t purge(const std::string& target) override;
    std::uint64_t size_bytes() override;

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

    static std::string relay_name();
    void add_breakers_table();
    void touch_breakers(SystemTime now);

    // connection and statements, schema, LISTEN/NOTIFY: postgresql_store.cpp
    Connection open_connection(const char* what) const;
    void connect();
    void drop_connection();
    void ensure_connected(const char* what);

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

    std::string trimmed(const char* message) const;
    std::string scrub(std::string text) const;
    static std::string one_line(const char* message);
    void check(const PGresult* r, ExecStatusType expected, const char* what) const;
    Result exec(const char* sql, std::initializer_list<const char*> params, const char* what);
    Result exec_prepared(const PreparedStatement& s, std::initializer_list<const char*> params,
                         const char* what);
    void migrate();
    void add_target_index();
    StoreError newer_schema(int version) const;
    void listen_loop();
    void stop_listening();

    // enqueue: postgresql_store_events.cpp
    void insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids,
                       bool& commit_sent);
    void lock_groups(std::span<const NewEvent> events);

    // claims and settlements: postgresql_store_claims.cpp
    void claim_events(SystemTime now, std::size_t limit, const TargetBound& targets,
                      std::vector<StoredEvent>& out);
    void settle_outcomes(std::span<const EventOutcome> outcomes);
    static std::string int_array(const std::vector<EventId>& ids);
    StoredEvent read_event(const PGresult* r, int row) const;

    std::string uri_;
    PostgresqlStoreOptions options_;
    std::string describe_;
    std::vector<std::string> secrets_;  // the password as written and as libpq reads it
    std::string me_;                    // this relay's name in outbox.claims: host:pid:random
    std::string identity_;
    Connection conn_;
    bool prepared_ = false;
    bool schema_ready_ = false;       // statements are prepared once it exists
    bool breakers_readable_ = false;  // outbox.breakers is there and this role may read it
    bool breakers_writable_ = false;  // ... and write it
    bool breakers_saved_ = false;     // this relay has rows there to keep fresh
    SystemTime next_breaker_touch_{};
    struct Claim {
        bool grouped = false;
        SystemTime renew_at{};  // half its lease, by the relay's clock
    };
    std::unordered_map<EventId, Claim> claimed_;  // our claims not yet settled
    std::thread listener_;
    int stop_pipe_[2] = {-1, -1};
    std::function<void()> on_arrival_;
};

}  // namespace outbox::detail::postgresql
