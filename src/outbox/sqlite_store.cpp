// The SQLite store: one table of events, WAL mode, claims kept in the relay's memory (never
// written to disk, so a crash releases them), and a relay lock taken with flock on a file
// beside the database (FILE-relay.lock).
// Here: opening it (pragmas, schema, integrity), its relay lock and errors; what it does with
// events is in sqlite_store_events.cpp, the class in sqlite_store_impl.hpp.
#include <outbox/sqlite_store.hpp>

#include "outbox/sqlite_store_impl.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace outbox {
namespace {

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
CREATE TABLE IF NOT EXISTS outbox_breakers(
    target TEXT PRIMARY KEY,
    health TEXT NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    failing_since INTEGER NOT NULL,
    next_probe_at INTEGER,
    last_error TEXT NOT NULL);
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

}  // namespace

namespace detail::sqlite {

SqliteStore::SqliteStore(std::string path, SqliteStoreOptions options)
    : path_(std::move(path)), options_(options) {
    if (!options_.create_if_missing && ::access(path_.c_str(), F_OK) != 0)
        throw StoreError(StoreError::Kind::io, where() + ": no such file" + hint_for_open(path_));
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

SqliteStore::~SqliteStore() {
    // close_v2: the connection goes once the prepared statements (members, finalized
    // after this body) are gone.
    sqlite3_close_v2(db_);
    if (relay_lock_fd_ >= 0) {
        [[maybe_unused]] const int cleared = ::ftruncate(relay_lock_fd_, 0);  // no holder
        ::close(relay_lock_fd_);                                              // releases the flock
    }
}

std::string SqliteStore::describe() const {
    return "sqlite:" + path_;
}

std::string SqliteStore::identity() const {
    return identity_;
}

// A file of its own beside the database: closing a descriptor of the database file itself
// would drop SQLite's POSIX locks on it for the whole process.
void SqliteStore::lock_for_relay() {
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

std::string SqliteStore::lock_holder(const std::string& lock_path) {
    std::ifstream in(lock_path);
    std::string line;
    if (!std::getline(in, line) || line.empty()) return "process unknown";
    return line;
}

std::uint64_t SqliteStore::size_bytes() {
    const std::int64_t pages = pragma_int("PRAGMA page_count");
    const std::int64_t free_pages = pragma_int("PRAGMA freelist_count");
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, pages - free_pages) *
                                      pragma_int("PRAGMA page_size"));
}

std::string SqliteStore::where() const {
    return "outbox store " + path_;
}

// Why a file may not open, from what can be seen of it.
std::string SqliteStore::directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash + 1);
}

std::string SqliteStore::hint_for_open(const std::string& path) {
    const std::string dir = directory_of(path);
    if (::access(dir.c_str(), F_OK) != 0) return " (its directory does not exist)";
    if (::access(dir.c_str(), W_OK) != 0)
        return " (its directory is not writable: WAL mode creates FILE-wal and FILE-shm "
               "beside the file)";
    if (::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), R_OK | W_OK) != 0)
        return " (the file is not readable and writable)";
    return {};
}

void SqliteStore::fail(int rc, const char* what) const {
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

void SqliteStore::exec(const char* sql, const char* what) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc, what);
}

void SqliteStore::step_done(sqlite3_stmt* s, const char* what) {
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) fail(rc, what);
}

std::int64_t SqliteStore::pragma_int(const char* sql) {
    Statement s(db_, sql, where());
    const int rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW) fail(rc, sql);
    return sqlite3_column_int64(s.get(), 0);
}

std::string SqliteStore::meta(const char* key, const char* fallback) {
    Statement s(db_, "SELECT value FROM outbox_meta WHERE key = ?1", where() + ": meta");
    bind_text(s.get(), 1, key);
    if (sqlite3_step(s.get()) == SQLITE_ROW) return column_text(s.get(), 0);
    return fallback;
}

// Version 1 had no `waiting`: add it, compute it, replace the claims' index. Once, in one
// transaction; another process may have done it first.
void SqliteStore::migrate_from_1() {
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

void SqliteStore::set_meta(const char* key, const std::string& value) {
    Statement s(db_, "INSERT OR REPLACE INTO outbox_meta(key, value) VALUES (?1, ?2)",
                where() + ": meta");
    bind_text(s.get(), 1, key);
    bind_text(s.get(), 2, value);
    step_done(s.get(), "meta");
}

void SqliteStore::open() {
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
            throw StoreError(
                primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT ? StoreError::Kind::corrupt
                                                                      : StoreError::Kind::io,
                where() + ": cannot use it: " + why +
                    (primary == SQLITE_NOTADB ? " (it is not an SQLite file; nothing was changed)"
                                              : hint_for_open(path_)));
        }
    }
    if (mode != "wal")
        throw StoreError(StoreError::Kind::io, where() +
                                                   ": cannot switch to WAL mode (journal mode is " +
                                                   mode + "); the file system may not support it");
    exec(options_.sync_every_commit ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
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

void SqliteStore::check_integrity() {
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

}  // namespace detail::sqlite

OutboxStorePtr open_sqlite_store(const std::string& path, SqliteStoreOptions options) {
    return std::make_unique<detail::sqlite::SqliteStore>(path, options);
}

}  // namespace outbox
