// The SQLite store: one table of events, WAL mode, claims kept in the relay's memory (never
// written to disk, so a crash releases them), and a relay lock taken with flock on a file
// beside the database (FILE-relay.lock).
#include <outbox/sqlite_store.hpp>

#include "outbox/event_codec.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace outbox {
namespace {

using detail::from_ms;
using detail::to_ms;

// 2: `waiting` marks the events behind their group's head.
constexpr int schema_version = 2;

constexpr const char* schema = R"sql(
CREATE TABLE IF NOT EXISTS outbox_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_events(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    group_key TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    attributes BLOB,
    dedup_id TEXT NOT NULL DEFAULT '',
    delay_s INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    failed_at INTEGER NOT NULL DEFAULT 0,
    waiting INTEGER NOT NULL DEFAULT 0);
)sql";

// `waiting` is 1 for a living event with an older living one in its group. The claims' index
// holds only the living heads (partial: its two columns cost an enqueue less than three), so a
// claim never walks dead letters or the backlog behind a group's head. The same heads by
// target serve claims while a target has no room. Group members are indexed only when they
// have a group (an event without one costs no entry; queries on it say `group_key != ''` so
// SQLite may use it), and events that failed once by target and time, for a summary's last
// error. Indexes are made by any version's open (older ones keep them up to date like any
// index). A file made before these keeps its full group index `outbox_events_group`: writers
// of the version before may still run on it, and their queries need it.
constexpr const char* indexes = R"sql(
CREATE INDEX IF NOT EXISTS outbox_events_ready ON outbox_events(next_attempt_at, id)
    WHERE dead = 0 AND waiting = 0;
CREATE INDEX IF NOT EXISTS outbox_events_grouped ON outbox_events(target, group_key, dead, id)
    WHERE group_key != '';
CREATE INDEX IF NOT EXISTS outbox_events_target_ready ON outbox_events(target, next_attempt_at, id)
    WHERE dead = 0 AND waiting = 0;
CREATE INDEX IF NOT EXISTS outbox_events_failing ON outbox_events(target, failed_at, id)
    WHERE failed_at > 0;
)sql";

// Corrects `waiting` for the living events of ?1 (every target when empty), writing only the
// rows whose mark is wrong.
constexpr const char* recompute_waiting =
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

void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
void bind_blob(sqlite3_stmt* s, int i, std::string_view v) {
    sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
std::string column_text(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(s, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

class SqliteStore final : public OutboxStore {
  public:
    SqliteStore(std::string path, SqliteStoreOptions options)
        : path_(std::move(path)), options_(options) {
        if (!options_.create_if_missing && ::access(path_.c_str(), F_OK) != 0)
            throw StoreError(StoreError::Kind::io,
                             where() + ": no such file" + hint_for_open(path_));
        const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                          (options_.create_if_missing ? SQLITE_OPEN_CREATE : 0);
        if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
            const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            db_ = nullptr;
            throw StoreError(StoreError::Kind::io,
                             where() + ": cannot open: " + why + hint_for_open(path_));
        }
        // Looked at before SQLite reads anything (recovering the WAL, or making one), under
        // the name SQLite gives it (a symbolic link's target's).
        const char* wal = sqlite3_filename_wal(sqlite3_db_filename(db_, "main"));
        const bool wal_left_behind = wal != nullptr && ::access(wal, F_OK) == 0;
        check_integrity_at_open_ =
            options_.check_integrity == IntegrityCheck::always ||
            (options_.check_integrity == IntegrityCheck::after_unclean_stop && wal_left_behind);
        try {
            open();
        } catch (...) {
            // A file refused is left as it was: no checkpoint into it, and its WAL stays (so
            // the next open checks it again rather than trusting it).
            sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw;
        }
    }

    ~SqliteStore() override {
        // close_v2: the connection goes once the prepared statements (members, finalized
        // after this body) are gone.
        sqlite3_close_v2(db_);
        if (relay_lock_fd_ >= 0) {
            [[maybe_unused]] const int cleared = ::ftruncate(relay_lock_fd_, 0);  // no holder
            ::close(relay_lock_fd_);  // releases the flock
        }
    }

    std::string describe() const override { return "sqlite:" + path_; }
    std::string identity() const override { return identity_; }

    std::optional<StoredEvent> find(EventId id) override {
        Use use(select_one_);
        sqlite3_bind_int64(use.stmt, 1, id);
        const int rc = sqlite3_step(use.stmt);
        if (rc == SQLITE_ROW) return read_event(use.stmt);
        if (rc != SQLITE_DONE) fail(rc, "find");
        return std::nullopt;
    }

    void enqueue(std::span<const NewEvent> events, std::vector<EventId>& ids) override {
        keep_disk_reserve(events);
        with_room([&] { insert_events(events, ids); });
    }

    // Refuses an enqueue that would leave less than min_free_disk_bytes free. A transaction
    // takes about twice its bytes (the WAL, then the checkpoint into the file).
    void keep_disk_reserve(std::span<const NewEvent> events) {
        if (options_.min_free_disk_bytes == 0) return;
        struct statvfs disk {};
        if (::statvfs(directory_of(path_).c_str(), &disk) != 0) return;  // then SQLite says
        std::uint64_t bytes = 0;
        for (const NewEvent& e : events)
            bytes += e.message.body.size() + e.target.size() + e.message.group_id.size() + 64;
        const std::uint64_t free = std::uint64_t(disk.f_bavail) * disk.f_frsize;
        const std::uint64_t needed = options_.min_free_disk_bytes + 2 * bytes;
        if (free < needed)
            throw StoreError(StoreError::Kind::full,
                             where() + ": enqueue: the disk has " + std::to_string(free) +
                                 " bytes free; " + std::to_string(options_.min_free_disk_bytes) +
                                 " are kept for the relay to record deliveries "
                                 "(min_free_disk_bytes)");
    }

    void insert_events(std::span<const NewEvent> events, std::vector<EventId>& ids) {
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
    std::vector<StoredEvent> claim(SystemTime now, std::size_t limit,
                                   const TargetBound& targets) override {
        std::vector<StoredEvent> out;
        if (limit == 0) return out;
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
    std::vector<StoredEvent> claim_by_target(SystemTime now, std::size_t limit,
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
    bool take_if_free(sqlite3_stmt* s, std::vector<StoredEvent>& out) {
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

    void settle(std::span<const EventOutcome> outcomes) override {
        if (outcomes.empty()) return;
        with_room([&] { settle_outcomes(outcomes); });
    }

    void settle_outcomes(std::span<const EventOutcome> outcomes) {
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

    void unclaim(EventId id) {
        claimed_.erase(id);
        if (auto it = grouped_claims_.find(id); it != grouped_claims_.end()) {
            claimed_groups_.erase(it->second);
            grouped_claims_.erase(it);
        }
    }

    // Steps a statement that took an event out of its group's living members (RETURNING
    // target, group_key) and makes the group's next living event its head.
    void promote_next_of_group(sqlite3_stmt* taken) {
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

    void release_claims() override {
        claimed_.clear();
        grouped_claims_.clear();
        claimed_groups_.clear();
    }

    // A file of its own beside the database: closing a descriptor of the database file itself
    // would drop SQLite's POSIX locks on it for the whole process.
    void lock_for_relay() override {
        if (relay_lock_fd_ >= 0) return;
        const std::string lock_path = path_ + "-relay.lock";
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            throw StoreError(StoreError::Kind::io,
                             where() + ": cannot open " + lock_path + ": " + std::strerror(errno));
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            ::close(fd);
            if (err == EWOULDBLOCK)
                throw StoreError(StoreError::Kind::locked,
                                 where() + ": another relay is running on it (" +
                                     lock_holder(lock_path) + "); one relay per SQLite store");
            throw StoreError(StoreError::Kind::io, where() + ": " + std::strerror(err));
        }
        relay_lock_fd_ = fd;
        // Who holds it, for the next relay's refusal. In the lock file, not the database: a
        // relay must start on a full disk, where a write to the database may fail, to free it.
        const std::string holder = "pid " + std::to_string(::getpid()) + "\n";
        if (::ftruncate(fd, 0) == 0) {
            [[maybe_unused]] const auto written = ::pwrite(fd, holder.data(), holder.size(), 0);
        }
        // Repairs group marks a writer that did not keep them may have left (an enqueuer of
        // schema version 1 still running after the upgrade). Writes nothing when they are right;
        // on failure (a full disk) the relay still runs on the marks as they are. It reads every
        // event, so only in files that were upgraded from version 1: no writer of version 1
        // opens a file made at version 2.
        if (meta("repair_marks_at_start", "") != "1") return;
        try {
            Transaction tx(*this, "checking group marks");
            Statement r(db_, recompute_waiting, where() + ": checking group marks");
            bind_text(r.get(), 1, "");
            step_done(r.get(), "checking group marks");
            tx.commit();
        } catch (const StoreError&) {
        }
    }

    static std::string lock_holder(const std::string& lock_path) {
        std::ifstream in(lock_path);
        std::string line;
        if (!std::getline(in, line) || line.empty()) return "process unknown";
        return line;
    }

    // The first head that is not out: past the claimed ones, at most what is in flight.
    std::optional<SystemTime> next_due() override {
        Use use(select_next_due_);
        for (;;) {
            const int rc = sqlite3_step(use.stmt);
            if (rc == SQLITE_DONE) return std::nullopt;
            if (rc != SQLITE_ROW) fail(rc, "next due");
            if (!claimed_.count(sqlite3_column_int64(use.stmt, 1)))
                return from_ms(sqlite3_column_int64(use.stmt, 0));
        }
    }

    bool has_pending() override {
        Use use(select_any_pending_);
        const int rc = sqlite3_step(use.stmt);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc, "has pending");
        return rc == SQLITE_ROW;
    }

    // One pass over the events, counted per target in memory (as many entries as targets: a
    // GROUP BY would sort every event, in memory with temp_store = MEMORY), then each target's
    // last error from the index of failed events.
    std::vector<TargetSummary> summarize() override {
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
        return out;
    }

    std::vector<StoredEvent> dead_letters(const std::string& target, std::size_t limit) override {
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

    std::uint64_t redrive(const std::string& target, SystemTime now) override {
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

    std::uint64_t purge(const std::string& target) override {
        Transaction tx(*this, "purge");
        Statement s(db_, "DELETE FROM outbox_events WHERE target = ?1", where() + ": purge");
        bind_text(s.get(), 1, target);
        step_done(s.get(), "purge");
        const auto n = static_cast<std::uint64_t>(sqlite3_changes64(db_));
        tx.commit();
        return n;
    }

    std::uint64_t size_bytes() override {
        const std::int64_t pages = pragma_int("PRAGMA page_count");
        const std::int64_t free_pages = pragma_int("PRAGMA freelist_count");
        return static_cast<std::uint64_t>(std::max<std::int64_t>(0, pages - free_pages) *
                                          pragma_int("PRAGMA page_size"));
    }

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

    std::string where() const { return "outbox store " + path_; }

    // Why a file may not open, from what can be seen of it.
    static std::string directory_of(const std::string& path) {
        const auto slash = path.rfind('/');
        return slash == std::string::npos ? "." : path.substr(0, slash + 1);
    }

    static std::string hint_for_open(const std::string& path) {
        const std::string dir = directory_of(path);
        if (::access(dir.c_str(), F_OK) != 0) return " (its directory does not exist)";
        if (::access(dir.c_str(), W_OK) != 0)
            return " (its directory is not writable: WAL mode creates FILE-wal and FILE-shm "
                   "beside the file)";
        if (::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), R_OK | W_OK) != 0)
            return " (the file is not readable and writable)";
        return {};
    }

    [[noreturn]] void fail(int rc, const char* what) const {
        const int primary = rc & 0xff;
        const StoreError::Kind kind =
            primary == SQLITE_FULL                                  ? StoreError::Kind::full
            : primary == SQLITE_BUSY || primary == SQLITE_LOCKED    ? StoreError::Kind::busy
            : primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ? StoreError::Kind::corrupt
                                                                    : StoreError::Kind::io;
        throw StoreError(kind, where() + ": " + what + ": " + sqlite3_errmsg(db_) +
                                   (kind == StoreError::Kind::full
                                        ? " (the disk is full, or the file reached its limit)"
                                        : ""));
    }

    void exec(const char* sql, const char* what) {
        const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) fail(rc, what);
    }

    void step_done(sqlite3_stmt* s, const char* what) {
        const int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) fail(rc, what);
    }

    std::int64_t pragma_int(const char* sql) {
        Statement s(db_, sql, where());
        const int rc = sqlite3_step(s.get());
        if (rc != SQLITE_ROW) fail(rc, sql);
        return sqlite3_column_int64(s.get(), 0);
    }

    std::string meta(const char* key, const char* fallback) {
        Statement s(db_, "SELECT value FROM outbox_meta WHERE key = ?1", where() + ": meta");
        bind_text(s.get(), 1, key);
        if (sqlite3_step(s.get()) == SQLITE_ROW) return column_text(s.get(), 0);
        return fallback;
    }

    // Version 1 had no `waiting`: add it, compute it, replace the claims' index. Once, in one
    // transaction; another process may have done it first.
    void migrate_from_1() {
        // A relay of version 1 would settle without keeping the marks: it must be stopped.
        const std::string lock_path = path_ + "-relay.lock";
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd);
            throw StoreError(StoreError::Kind::locked,
                             where() + ": upgrading it to schema version " +
                                 std::to_string(schema_version) +
                                 " needs its relay of an older version stopped first (" +
                                 lock_holder(lock_path) + ")");
        }
        struct Unlock {
            int fd;
            ~Unlock() {
                if (fd >= 0) ::close(fd);
            }
        } unlock{fd};
        Transaction tx(*this, "upgrading its schema");
        if (meta("schema_version", "") != "1") return;
        exec(
            "ALTER TABLE outbox_events ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0; "
            "DROP INDEX IF EXISTS outbox_events_due",
            "upgrading its schema");
        Statement r(db_, recompute_waiting, where() + ": upgrading its schema");
        bind_text(r.get(), 1, "");
        step_done(r.get(), "upgrading its schema");
        set_meta("schema_version", std::to_string(schema_version));
        set_meta("repair_marks_at_start", "1");
        tx.commit();
    }

    void set_meta(const char* key, const std::string& value) {
        Statement s(db_, "INSERT OR REPLACE INTO outbox_meta(key, value) VALUES (?1, ?2)",
                    where() + ": meta");
        bind_text(s.get(), 1, key);
        bind_text(s.get(), 2, value);
        step_done(s.get(), "meta");
    }

    void open() {
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, static_cast<int>(options_.busy_timeout.count()));
        // The first read tells a file that is not a database from one that is.
        std::string mode;
        {
            // A new file gets 16 KiB pages (SQLite's default is 4): a page then holds about 14
            // events of 1 KiB, not 3. Per 100,000 delivered events 15,600 preads instead of
            // 55,000 and 41,000 pwrites instead of 67,000: less CPU, though each write is a
            // larger page (about 2.5x the bytes written). An existing file keeps its own; this
            // reads nothing.
            sqlite3_exec(db_, "PRAGMA page_size = 16384", nullptr, nullptr, nullptr);
            sqlite3_stmt* raw = nullptr;
            int rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode = WAL", -1, &raw, nullptr);
            if (rc == SQLITE_OK) rc = sqlite3_step(raw);
            if (rc == SQLITE_ROW) mode = column_text(raw, 0);
            const std::string why = sqlite3_errmsg(db_);
            sqlite3_finalize(raw);
            if (rc != SQLITE_ROW) {
                const int primary = rc & 0xff;
                throw StoreError(primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT
                                     ? StoreError::Kind::corrupt
                                     : StoreError::Kind::io,
                                 where() + ": cannot use it: " + why +
                                     (primary == SQLITE_NOTADB
                                          ? " (it is not an SQLite file; nothing was changed)"
                                          : hint_for_open(path_)));
            }
        }
        if (mode != "wal")
            throw StoreError(StoreError::Kind::io,
                             where() + ": cannot switch to WAL mode (journal mode is " + mode +
                                 "); the file system may not support it");
        exec(options_.sync_every_commit ? "PRAGMA synchronous = FULL"
                                        : "PRAGMA synchronous = NORMAL",
             "settings");
        // 16 MiB of page cache (the default is 2): claims and settlements re-read the pages at
        // the head of the backlog, and a pread per page costs more than the rest of a claim.
        exec("PRAGMA cache_size = -16384", "settings");
        // Temporary b-trees (a summary's grouping) in memory, not in a file read back with pread.
        exec("PRAGMA temp_store = MEMORY", "settings");
        // Delivered events' bytes are zeroed in the pages a deletion writes anyway, but a page
        // freed whole is not written again only to zero it (Debian builds SQLite with
        // secure_delete on, which did: 1.26 page writes per delivered event, now 0.74).
        exec("PRAGMA secure_delete = FAST", "settings");
        if (check_integrity_at_open_) check_integrity();
        if (options_.max_file_bytes != 0) {
            const auto page = static_cast<std::uint64_t>(pragma_int("PRAGMA page_size"));
            const std::string sql =
                "PRAGMA max_page_count = " +
                std::to_string(std::max<std::uint64_t>(1, options_.max_file_bytes / page));
            exec(sql.c_str(), "settings");
        }
        exec(schema, "creating its tables");
        const std::string version = meta("schema_version", "");
        if (version == "1") {
            migrate_from_1();
        } else if (version.empty()) {
            set_meta("schema_version", std::to_string(schema_version));
            unsigned char random[8];
            sqlite3_randomness(sizeof random, random);
            static constexpr char hex[] = "0123456789abcdef";
            std::string made;
            for (unsigned char b : random) {
                made.push_back(hex[b >> 4]);
                made.push_back(hex[b & 15]);
            }
            set_meta("identity", made);
        } else if (version != std::to_string(schema_version))
            throw StoreError(StoreError::Kind::corrupt, where() + ": schema version " + version +
                                                            "; this outbox reads " +
                                                            std::to_string(schema_version));
        exec(indexes, "creating its indexes");
        identity_ = meta("identity", "");

        constexpr const char* columns =
            "id, target, group_key, body, attributes, dedup_id, delay_s, enqueued_at, "
            "next_attempt_at, attempts, dead, last_error";
        insert_ = Statement(db_,
                            "INSERT INTO outbox_events(target, group_key, body, attributes, "
                            "dedup_id, delay_s, enqueued_at, next_attempt_at, waiting) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?2 = '' THEN 0 "
                            "ELSE EXISTS (SELECT 1 FROM outbox_events WHERE target = ?1 AND "
                            "group_key = ?2 AND group_key != '' AND dead = 0) END)",
                            where());
        // Due heads of their groups (`waiting` 0: a claimed or retrying head holds the rest
        // back), oldest first; claim() passes over the claimed ones.
        select_due_ = Statement(db_,
                                (std::string("SELECT ") + columns +
                                 " FROM outbox_events WHERE dead = 0 AND waiting = 0 "
                                 "AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id")
                                    .c_str(),
                                where());
        select_due_of_target_ =
            Statement(db_,
                      (std::string("SELECT ") + columns +
                       " FROM outbox_events WHERE target = ?1 AND dead = 0 AND waiting = 0 AND "
                       "next_attempt_at <= ?2 ORDER BY next_attempt_at, id")
                          .c_str(),
                      where());
        select_first_target_ = Statement(db_,
                                         "SELECT target FROM outbox_events WHERE dead = 0 AND "
                                         "waiting = 0 ORDER BY target LIMIT 1",
                                         where());
        select_next_target_ = Statement(db_,
                                        "SELECT target FROM outbox_events WHERE dead = 0 AND "
                                        "waiting = 0 AND target > ?1 ORDER BY target LIMIT 1",
                                        where());
        delete_event_ = Statement(db_, "DELETE FROM outbox_events WHERE id = ?1", where());
        delete_event_returning_ = Statement(
            db_, "DELETE FROM outbox_events WHERE id = ?1 RETURNING target, group_key", where());
        update_failed_ = Statement(db_,
                                   "UPDATE outbox_events SET attempts = ?1, next_attempt_at = ?2, "
                                   "dead = ?3, last_error = ?4, failed_at = ?5 WHERE id = ?6 "
                                   "RETURNING target, group_key",
                                   where());
        promote_ = Statement(db_,
                             "UPDATE outbox_events SET waiting = 0 WHERE id = (SELECT id FROM "
                             "outbox_events WHERE target = ?1 AND group_key = ?2 AND "
                             "group_key != '' AND dead = 0 ORDER BY id LIMIT 1)",
                             where());
        select_one_ = Statement(
            db_, (std::string("SELECT ") + columns + " FROM outbox_events WHERE id = ?1").c_str(),
            where());
        select_any_pending_ = Statement(
            db_, "SELECT 1 FROM outbox_events WHERE dead = 0 AND waiting = 0 LIMIT 1", where());
        select_next_due_ = Statement(db_,
                                     "SELECT next_attempt_at, id FROM outbox_events WHERE dead = 0 "
                                     "AND waiting = 0 ORDER BY next_attempt_at, id",
                                     where());
    }

    void check_integrity() {
        Statement s(db_, "PRAGMA quick_check", where() + ": integrity check");
        std::string problems;
        for (int rows = 0;; ++rows) {
            const int rc = sqlite3_step(s.get());
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) fail(rc, "integrity check");
            const std::string line = column_text(s.get(), 0);
            if (line == "ok") continue;
            if (rows < 5) problems += (problems.empty() ? "" : "; ") + line;
        }
        if (!problems.empty())
            throw StoreError(StoreError::Kind::corrupt,
                             where() + ": fails its integrity check: " + problems +
                                 " (nothing was changed; restore it from a backup, or move it "
                                 "aside to start empty)");
    }

    StoredEvent read_event(sqlite3_stmt* s) const {
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

}  // namespace

OutboxStorePtr open_sqlite_store(const std::string& path, SqliteStoreOptions options) {
    return std::make_unique<SqliteStore>(path, options);
}

}  // namespace outbox
