// The SQLite store's class and its statement helpers, private to the library: its members are
// defined in sqlite_store.cpp (opening, schema, relay lock) and sqlite_store_events.cpp.
#pragma once

#include <outbox/sqlite_store.hpp>

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace outbox::detail::sqlite {

// Corrects `waiting` for the living events of ?1 (every target when empty), writing only the
// rows whose mark is wrong.
inline constexpr const char* recompute_waiting =
    "UPDATE outbox_events SET waiting = 1 - waiting WHERE dead = 0 AND (?1 = '' OR target = ?1) "
    "AND waiting IS NOT (group_key != '' AND EXISTS (SELECT 1 FROM outbox_events g WHERE "
    "g.target = outbox_events.target AND g.group_key = outbox_events.group_key AND "
    "g.group_key != '' AND g.dead = 0 "
    "AND g.id < outbox_events.id))";

class Statement {
  public:
    Statement() = default;
    Statement(sqlite3* db, const char* sql, const std::string& where) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
            SQLITE_OK)
            throw StoreError(StoreError::Kind::io, where + ": " + sqlite3_errmsg(db));
    }
    ~Statement() { sqlite3_finalize(stmt_); }
    Statement(Statement&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) {}
    Statement& operator=(Statement&& o) noexcept {
        std::swap(stmt_, o.stmt_);
        return *this;
    }
    sqlite3_stmt* get() const noexcept { return stmt_; }

  private:
    sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement when a use of it ends, however it ends.
struct Use {
    explicit Use(const Statement& s) : stmt(s.get()) {}
    ~Use() {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
    sqlite3_stmt* stmt;
};

inline void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
inline void bind_blob(sqlite3_stmt* s, int i, std::string_view v) {
    sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
inline std::string column_text(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(s, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

class SqliteStore final : public OutboxStore {
  public:
    SqliteStore(std::string path, SqliteStoreOptions options);
    ~SqliteStore() override;

    std::string describe() const override;
    std::string identity() const override;

    std::optional<StoredEvent> find(EventId id) override;
    void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) override;
    void keep_disk_reserve(std::span<const NewEvent> events);
    void insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids);
    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                   const TargetBound& targets) override;
    std::vector<StoredEvent> claim_by_target(SystemTime now, std::size_t limit,
                                             const TargetBound& targets);
    bool take_if_free(sqlite3_stmt* s, std::vector<StoredEvent>& out);
    void settle(std::span<const EventOutcome> outcomes) override;
    void settle_outcomes(std::span<const EventOutcome> outcomes);
    void unclaim(EventId id);
    void promote_next_of_group(sqlite3_stmt* taken);
    void release_claims() override;
    void lock_for_relay() override;
    static std::string lock_holder(const std::string& lock_path);
    std::optional<SystemTime> next_due() override;
    bool has_pending() override;
    std::vector<TargetSummary> summarize() override;
    void save_breaker(const TargetBreakerState& state) override;
    void forget_breakers() override;
    std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) override;
    std::uint64_t redrive(const std::string& target, SystemTime now) override;
    std::uint64_t purge(const std::string& target) override;
    std::uint64_t size_bytes() override;

  private:
    // On a full disk the WAL may hold what a checkpoint would give back: it grows until a
    // checkpoint, and a delivered event's delete needs room in it too. Checkpoint, truncate it
    // and try the transaction once more before the caller hears "full".
    template <class Transact>
    void with_room(Transact&& transact) {
        try {
            transact();
        } catch (const StoreError& e) {
            if (e.kind() != StoreError::Kind::full) throw;
            sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
            transact();
        }
    }

    // synchronous = NORMAL for its lifetime, when the store is FULL.
    class SyncRelaxed {
      public:
        explicit SyncRelaxed(SqliteStore& store)
            : store_(store), relaxed_(store.options_.sync_every_commit) {
            if (relaxed_) store_.exec("PRAGMA synchronous = NORMAL", "settings");
        }
        ~SyncRelaxed() {
            // Should this fail, the next enqueue restores it before its transaction, or fails.
            if (relaxed_ && sqlite3_exec(store_.db_, "PRAGMA synchronous = FULL", nullptr, nullptr,
                                         nullptr) != SQLITE_OK)
                store_.sync_to_restore_ = true;
        }
        SyncRelaxed(const SyncRelaxed&) = delete;
        SyncRelaxed& operator=(const SyncRelaxed&) = delete;

      private:
        SqliteStore& store_;
        bool relaxed_;
    };

    // BEGIN IMMEDIATE ... COMMIT, rolled back unless committed.
    class Transaction {
      public:
        Transaction(SqliteStore& store, const char* what) : store_(store), what_(what) {
            store_.exec("BEGIN IMMEDIATE", what);
        }
        ~Transaction() {
            if (!done_) sqlite3_exec(store_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
        }
        void commit() {
            store_.exec("COMMIT", what_);
            done_ = true;
        }

      private:
        SqliteStore& store_;
        const char* what_;
        bool done_ = false;
    };

    std::string where() const;
    static std::string directory_of(const std::string& path);
    static std::string hint_for_open(const std::string& path);
    [[noreturn]] void fail(int rc, const char* what) const;
    void exec(const char* sql, const char* what);
    void step_done(sqlite3_stmt* s, const char* what);
    std::int64_t pragma_int(const char* sql);
    std::string meta(const char* key, const char* fallback);
    void migrate_from_1();
    void set_meta(const char* key, const std::string& value);
    void open();
    void check_integrity();
    StoredEvent read_event(sqlite3_stmt* s) const;

    std::string path_;
    SqliteStoreOptions options_;
    sqlite3* db_ = nullptr;
    int relay_lock_fd_ = -1;
    using GroupKey = std::pair<std::string, std::string>;  // target, group
    std::unordered_set<EventId> claimed_;                  // handed out, not yet settled
    std::unordered_map<EventId, GroupKey> grouped_claims_;
    std::set<GroupKey> claimed_groups_;
    std::string identity_;

    bool check_integrity_at_open_ = false;
    bool sync_to_restore_ = false;
    Statement select_any_pending_, select_one_, insert_, select_due_, select_due_of_target_,
        select_first_target_, select_next_target_, delete_event_, delete_event_returning_,
        update_failed_, promote_, select_next_due_;
};

}  // namespace outbox::detail::sqlite
