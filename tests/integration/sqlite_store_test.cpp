// The SQLite store on a real file: what it keeps, what it hands out and in which order, and
// how it refuses files it cannot trust (not a database, damaged, read-only, another relay).
#include <outbox/sqlite_store.hpp>

#include "catch.hpp"
#include "program_run.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

using namespace outbox;
using namespace std::chrono_literals;
using outbox::test::TempDir;

namespace {

NewEvent event(std::string target, std::string body, std::string group = {}) {
    NewEvent e;
    e.target = std::move(target);
    e.message.body = std::move(body);
    e.message.group_id = std::move(group);
    return e;
}

std::vector<EventId> enqueue(OutboxStore& store, std::vector<NewEvent> events) {
    std::vector<EventId> ids;
    store.enqueue(events, ids);
    return ids;
}

std::vector<std::string> bodies(const std::vector<StoredEvent>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.message.body);
    return out;
}

EventOutcome delivered(EventId id) {
    EventOutcome o;
    o.kind = EventOutcome::Kind::delivered;
    o.id = id;
    return o;
}

EventOutcome retry(EventId id, SystemTime when, std::string error = "HTTP 503") {
    EventOutcome o;
    o.kind = EventOutcome::Kind::retry;
    o.id = id;
    o.attempts = 1;
    o.next_attempt_at = when;
    o.error = std::move(error);
    return o;
}

EventOutcome dead(EventId id, std::string error) {
    EventOutcome o;
    o.kind = EventOutcome::Kind::dead;
    o.id = id;
    o.attempts = 1;
    o.error = std::move(error);
    return o;
}

SystemTime now() {
    return std::chrono::system_clock::now();
}

}  // namespace

TEST_CASE("events are kept whole and handed out oldest first, each once until settled") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    NewEvent full = event("q1", std::string("with\0nul", 8), "g");
    full.message.attributes = {{"kind", "String", "order"}, {"blob", "Binary", "\x01\x02"}};
    full.message.deduplication_id = "d-1";
    full.message.delay = 30s;
    const auto ids = enqueue(*store, {full, event("q1", "two"), event("q2", "three")});
    REQUIRE(ids.size() == 3);
    CHECK(ids[0] < ids[1]);
    CHECK(ids[1] < ids[2]);

    auto claimed = store->claim(now(), 10);
    REQUIRE(claimed.size() == 3);
    CHECK(claimed[0].id == ids[0]);
    CHECK(claimed[0].target == "q1");
    CHECK(claimed[0].message.body == std::string("with\0nul", 8));
    CHECK(claimed[0].message.group_id == "g");
    CHECK(claimed[0].message.deduplication_id == "d-1");
    CHECK(claimed[0].message.delay == 30s);
    REQUIRE(claimed[0].message.attributes.size() == 2);
    CHECK(claimed[0].message.attributes[1].value == "\x01\x02");
    CHECK(store->claim(now(), 10).empty());  // all claimed

    store->settle(std::vector{delivered(ids[0]), delivered(ids[2])});
    CHECK_FALSE(store->find(ids[0]));
    CHECK(store->find(ids[1]));
    store->release_claims();
    const auto again = store->claim(now(), 10);
    REQUIRE(again.size() == 1);
    CHECK(again[0].id == ids[1]);
}

TEST_CASE(
    "a group gives out one event at a time, in order, across retries; dead letters do "
    "not hold it") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    const auto ids = enqueue(
        *store, {event("fifo", "a1", "a"), event("fifo", "a2", "a"), event("fifo", "b1", "b"),
                 event("fifo", "a3", "a"), event("fifo", "loose")});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a1", "b1", "loose"});
    CHECK(store->claim(now(), 10).empty());  // a2 waits for a1
    // a1 fails: the group waits for its retry, even though a2 is due.
    store->settle(std::vector{retry(ids[0], now() + 1h), delivered(ids[2]), delivered(ids[4])});
    CHECK(store->claim(now(), 10).empty());
    auto retried = store->claim(now() + 2h, 10);
    CHECK(bodies(retried) == std::vector<std::string>{"a1"});
    CHECK(retried[0].attempts == 1);
    CHECK(retried[0].last_error == "HTTP 503");
    // a1 becomes a dead letter: the group goes on with a2, then a3.
    store->settle(std::vector{dead(ids[0], "AccessDenied")});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a2"});
    store->settle(std::vector{delivered(ids[1])});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a3"});
}

TEST_CASE("while a target has no room, claims pass over its backlog and the others share") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    // Oldest first: a backlog of the full target ahead of the others' events.
    std::vector<NewEvent> events;
    for (int i = 0; i < 5000; ++i) events.push_back(event("full", "f" + std::to_string(i)));
    for (const char* t : {"b", "c"})
        for (int i = 0; i < 20; ++i) events.push_back(event(t, t + std::to_string(i)));
    for (int i = 0; i < 3; ++i) events.push_back(event("g", "g" + std::to_string(i), "x"));
    enqueue(*store, events);
    auto per_target = [](const std::vector<StoredEvent>& claimed) {
        std::map<std::string, int> n;
        for (const auto& e : claimed) ++n[e.target];
        return n;
    };
    // "full" has all 8 of its share out, "b" 3 (5 left); "c" and "g" none yet.
    const auto first = store->claim(now(), 100, TargetBound{8, {{"full", 8}, {"b", 3}}});
    CHECK(per_target(first) == std::map<std::string, int>{{"b", 5}, {"c", 8}, {"g", 1}});
    for (std::size_t i = 1; i < first.size(); ++i)  // in due order
        CHECK(first[i - 1].id < first[i].id);
    // An equal share of the claim each: 2 + 2 of b and c, the group's head being out.
    const auto shared = store->claim(now(), 4, TargetBound{100, {{"full", 100}}});
    CHECK(per_target(shared) == std::map<std::string, int>{{"b", 2}, {"c", 2}});
    // Every known target with room: in due order, no more than the least room.
    const auto in_order = store->claim(now(), 100, TargetBound{8, {{"b", 2}}});
    CHECK(per_target(in_order) == std::map<std::string, int>{{"full", 6}});
    // Without a bound the oldest come first: the full target's.
    const auto unbounded = store->claim(now(), 10);
    CHECK(per_target(unbounded) == std::map<std::string, int>{{"full", 10}});
}

TEST_CASE("capped targets (open breakers): 0 passes a backlog over, 1 takes its probe") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    std::vector<NewEvent> events;
    for (int i = 0; i < 3000; ++i) events.push_back(event("broken", "x" + std::to_string(i)));
    for (const char* t : {"b", "c"})
        for (int i = 0; i < 10; ++i) events.push_back(event(t, t + std::to_string(i)));
    enqueue(*store, events);
    auto per_target = [](const std::vector<StoredEvent>& claimed) {
        std::map<std::string, int> n;
        for (const auto& e : claimed) ++n[e.target];
        return n;
    };
    // No bound per target, one breaker refusing: the others' events, none of its backlog.
    TargetBound refusing;
    refusing.cap = {{"broken", 0}};
    CHECK(per_target(store->claim(now(), 8, refusing)) ==
          std::map<std::string, int>{{"b", 4}, {"c", 4}});
    // Its probe due: exactly one of its events (its oldest), the others as before.
    TargetBound probing{100, {}, {{"broken", 1}}};
    const auto probe = store->claim(now(), 100, probing);
    CHECK(per_target(probe) == std::map<std::string, int>{{"b", 6}, {"broken", 1}, {"c", 6}});
    for (const auto& e : probe)
        if (e.target == "broken") CHECK(e.message.body == "x0");
}

TEST_CASE("a relay's breakers are kept beside the summaries until healthy or forgotten") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    enqueue(*store, {event("broken", "x"), event("fine", "y")});
    TargetBreakerState open;
    open.target = "broken";
    open.health = TargetHealth::open;
    open.consecutive_failures = 5;
    open.failing_since = now() - 1min;
    open.next_probe_at = now() + 30s;
    open.last_error = "service unavailable: down";
    store->save_breaker(open);
    TargetBreakerState degraded;  // a target with no events left still shows
    degraded.target = "gone";
    degraded.health = TargetHealth::degraded;
    degraded.consecutive_failures = 2;
    store->save_breaker(degraded);
    auto by_target = [&](OutboxStore& s) {
        std::map<std::string, TargetSummary> m;
        for (auto& t : s.summarize()) m[t.target] = t;
        return m;
    };
    // Seen from another connection, as `outbox inspect` would.
    SqliteStoreOptions existing;
    existing.create_if_missing = false;
    auto other = open_sqlite_store(dir.file("events.db"), existing);
    auto seen = by_target(*other);
    REQUIRE(seen.size() == 3);
    CHECK(seen["broken"].health == TargetHealth::open);
    CHECK(seen["broken"].consecutive_failures == 5);
    CHECK(seen["broken"].pending == 1);
    REQUIRE(seen["broken"].next_probe_at);
    CHECK(std::chrono::abs(*seen["broken"].next_probe_at - (now() + 30s)) < 2s);
    CHECK(seen["broken"].last_error == "service unavailable: down");
    CHECK(seen["gone"].health == TargetHealth::degraded);
    CHECK(seen["gone"].pending == 0);
    CHECK_FALSE(seen["gone"].next_probe_at);
    CHECK(seen["fine"].health == TargetHealth::healthy);
    // Saved again it is replaced; healthy, it is forgotten; forget_breakers drops the rest.
    open.health = TargetHealth::disabled;
    store->save_breaker(open);
    CHECK(by_target(*other)["broken"].health == TargetHealth::disabled);
    open.health = TargetHealth::healthy;
    store->save_breaker(open);
    CHECK(by_target(*other)["broken"].health == TargetHealth::healthy);
    store->forget_breakers();
    CHECK(by_target(*other).size() == 2);  // "gone" had only its breaker
}

TEST_CASE("redriven dead letters go out before the younger members of their group, in order") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    const auto ids = enqueue(
        *store, {event("fifo", "a1", "a"), event("fifo", "a2", "a"), event("fifo", "a3", "a")});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a1"});
    store->settle(std::vector{dead(ids[0], "AccessDenied")});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a2"});
    store->settle(std::vector{dead(ids[1], "AccessDenied")});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a3"});
    store->settle(std::vector{retry(ids[2], now() - 1s)});  // due again, older than a redrive
    CHECK(store->redrive("fifo", now()) == 2);
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a1"});
    store->settle(std::vector{delivered(ids[0])});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a2"});
    store->settle(std::vector{delivered(ids[1])});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a3"});
}

TEST_CASE("a store of schema version 1 is upgraded in place: groups keep their order") {
    TempDir dir;
    const std::string path = dir.file("v1.db");
    {
        // The tables as version 1 made them, with events of a group, one of them dead.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        const char* v1 = R"sql(
PRAGMA journal_mode = WAL;
CREATE TABLE outbox_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE outbox_events(
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,
    group_key TEXT NOT NULL DEFAULT '', body BLOB NOT NULL, attributes BLOB,
    dedup_id TEXT NOT NULL DEFAULT '', delay_s INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '', failed_at INTEGER NOT NULL DEFAULT 0);
CREATE INDEX outbox_events_due ON outbox_events(dead, next_attempt_at, id);
CREATE INDEX outbox_events_group ON outbox_events(target, group_key, dead, id);
INSERT INTO outbox_meta VALUES ('schema_version', '1'), ('identity', '0123456789abcdef');
INSERT INTO outbox_events(target, group_key, body, enqueued_at, next_attempt_at, dead) VALUES
    ('fifo', 'a', 'a0', 1, 1, 1), ('fifo', 'a', 'a1', 1, 1, 0), ('fifo', 'a', 'a2', 1, 1, 0),
    ('fifo', 'b', 'b1', 1, 1, 0), ('std', '', 'loose', 1, 1, 0);
)sql";
        CHECK(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    {
        // A relay of version 1 still running (holding the relay lock) stops the upgrade.
        const int held = ::open((path + "-relay.lock").c_str(), O_RDWR | O_CREAT, 0600);
        REQUIRE(::flock(held, LOCK_EX | LOCK_NB) == 0);
        CHECK_THROWS_WITH(open_sqlite_store(path),
                          Catch::Contains("needs its relay of an older version stopped first"));
        ::close(held);
    }
    auto store = open_sqlite_store(path);
    CHECK(store->identity() == "0123456789abcdef");
    auto claimed = store->claim(now(), 10);
    CHECK(bodies(claimed) == std::vector<std::string>{"a1", "b1", "loose"});
    store->settle(std::vector{delivered(claimed[0].id)});
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"a2"});
    store.reset();
    // Opened again: nothing to upgrade; the claims went with the connection.
    store = open_sqlite_store(path);
    claimed = store->claim(now(), 10);
    CHECK(bodies(claimed) == std::vector<std::string>{"a2", "b1", "loose"});

    // a2 waits for a retry; an enqueuer of version 1 adds a3 without the mark. A relay
    // starting on the file repairs it: a3 does not overtake a2.
    store->settle(std::vector{retry(claimed[0].id, now() + 1h)});
    store.reset();
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db,
                           "INSERT INTO outbox_events(target, group_key, body, enqueued_at, "
                           "next_attempt_at) VALUES ('fifo', 'a', 'a3', 1, 1)",
                           nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    store = open_sqlite_store(path);
    store->lock_for_relay();
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"b1", "loose"});
    CHECK(bodies(store->claim(now() + 2h, 10)) == std::vector<std::string>{"a2"});
}

TEST_CASE("summaries, next due, dead letters, redrive and purge") {
    TempDir dir;
    auto store = open_sqlite_store(dir.file("events.db"));
    const auto ids = enqueue(*store, {event("q1", "1"), event("q1", "2"), event("q2", "3")});
    CHECK(store->claim(now(), 10).size() == 3);
    const auto later = now() + 10min;
    store->settle(std::vector{retry(ids[0], later, "throttled"), dead(ids[1], "AccessDenied"),
                              delivered(ids[2])});
    const auto due = store->next_due();
    REQUIRE(due);
    CHECK(std::chrono::abs(*due - later) < 2ms);
    auto summary = store->summarize();
    REQUIRE(summary.size() == 1);  // q2 has nothing left
    CHECK(summary[0].target == "q1");
    CHECK(summary[0].pending == 1);
    CHECK(summary[0].retrying == 1);
    CHECK(summary[0].dead == 1);
    CHECK(summary[0].oldest_pending);
    CHECK((summary[0].last_error == "AccessDenied" || summary[0].last_error == "throttled"));
    const auto letters = store->dead_letters("", 10);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].message.body == "2");
    CHECK(letters[0].last_error == "AccessDenied");
    CHECK(store->redrive("q2", now()) == 0);
    CHECK(store->redrive("", now()) == 1);
    store->release_claims();
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"2"});
    CHECK(store->purge("q1") == 2);
    CHECK(store->summarize().empty());
    CHECK_FALSE(store->next_due());
}

TEST_CASE("what was stored survives the store being closed and opened again; claims do not") {
    TempDir dir;
    const std::string path = dir.file("events.db");
    std::vector<EventId> ids;
    std::string identity;
    {
        auto store = open_sqlite_store(path);
        identity = store->identity();
        ids = enqueue(*store, {event("q", "kept"), event("q", "claimed")});
        CHECK(store->claim(now(), 1).size() == 1);  // in flight when the process ends
    }
    auto store = open_sqlite_store(path);
    CHECK(store->identity() == identity);
    CHECK(identity.size() == 16);
    CHECK(bodies(store->claim(now(), 10)) == std::vector<std::string>{"kept", "claimed"});
    CHECK(enqueue(*store, {event("q", "later")})[0] > ids[1]);  // ids are never reused
}

TEST_CASE("files it cannot trust are refused, naming the file and the cause; nothing is reset") {
    TempDir dir;
    SECTION("not a database") {
        const std::string path = dir.file("notes.txt");
        std::ofstream(path) << std::string(8192, 'x');
        try {
            open_sqlite_store(path);
            FAIL("opened");
        } catch (const StoreError& e) {
            CHECK(e.kind() == StoreError::Kind::corrupt);
            CHECK(std::string(e.what()).find(path) != std::string::npos);
            CHECK(std::string(e.what()).find("not an SQLite file") != std::string::npos);
        }
        std::ifstream in(path);
        CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == std::string(8192, 'x'));
    }
    SECTION("a damaged database fails its integrity check after an unclean stop, or always") {
        const std::string path = dir.file("events.db");
        {
            auto store = open_sqlite_store(path);
            std::vector<NewEvent> many;
            for (int i = 0; i < 2000; ++i)
                many.push_back(event("q", std::string(300, 'a' + i % 26)));
            enqueue(*store, many);
        }
        CHECK_FALSE(std::filesystem::exists(path + "-wal"));  // a clean close removes it
        // Scribble over a page in the middle (an index or table page), as a bad disk would.
        auto damage = [&] {
            std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(path) / 2));
            const std::string junk(4096, '\x5a');
            f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
        };
        auto refused = [&](SqliteStoreOptions options, std::string name = {}) {
            if (name.empty()) name = path;
            const auto size = std::filesystem::file_size(path);
            try {
                open_sqlite_store(name, options);
                return false;
            } catch (const StoreError& e) {
                INFO(e.what());
                CHECK(e.kind() == StoreError::Kind::corrupt);
                CHECK(std::string(e.what()).find(name) != std::string::npos);
                CHECK(std::string(e.what()).find("integrity check") != std::string::npos);
            }
            CHECK(std::filesystem::file_size(path) == size);  // nothing changed
            return true;
        };
        SqliteStoreOptions always;
        always.check_integrity = IntegrityCheck::always;
        SECTION("after a process using the file was killed") {
            // The last user dies holding it, as a crash or a power loss leaves it: WAL behind.
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) {
                try {
                    auto store = open_sqlite_store(path);
                    enqueue(*store, {event("q", "the last one")});
                    ::raise(SIGKILL);
                } catch (...) {
                }
                ::_exit(1);
            }
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            REQUIRE(WIFSIGNALED(status));
            REQUIRE(std::filesystem::exists(path + "-wal"));
            damage();
            auto contents = [&](const std::string& file) {
                std::ifstream in(file, std::ios::binary);
                return std::string(std::istreambuf_iterator<char>(in), {});
            };
            const std::string before = contents(path), wal_before = contents(path + "-wal");
            CHECK(refused({}));
            // Refusing it changed nothing, its WAL included: the next open checks it again.
            CHECK(contents(path) == before);
            CHECK(contents(path + "-wal") == wal_before);
            CHECK(refused({}));
            // Through a symbolic link, SQLite's WAL is the target's: still seen, still checked.
            std::filesystem::create_symlink(path, dir.file("link.db"));
            CHECK(refused({}, dir.file("link.db")));
        }
        SECTION("at every open when told to") {
            damage();
            // The default trusts a file its last user closed (no WAL left): the check reads
            // every page, and a restart after a deploy should not wait for it.
            CHECK_FALSE(refused({}));
            CHECK(refused(always));
            // A refused open leaves the WAL it made: from then on every open checks.
            CHECK(std::filesystem::exists(path + "-wal"));
            CHECK(refused({}));
        }
    }
    SECTION("a directory that does not exist, or cannot be written") {
        try {
            open_sqlite_store(dir.file("missing/events.db"));
            FAIL("opened");
        } catch (const StoreError& e) {
            CHECK(std::string(e.what()).find("its directory does not exist") != std::string::npos);
        }
        const std::string locked = dir.file("locked");
        std::filesystem::create_directory(locked);
        ::chmod(locked.c_str(), 0500);
        if (::geteuid() != 0) {  // root writes anywhere
            try {
                open_sqlite_store(locked + "/events.db");
                FAIL("opened");
            } catch (const StoreError& e) {
                CHECK(std::string(e.what()).find("not writable") != std::string::npos);
            }
        }
        ::chmod(locked.c_str(), 0700);
    }
    SECTION("one relay at a time") {
        const std::string path = dir.file("events.db");
        auto first = open_sqlite_store(path);
        auto second = open_sqlite_store(path);
        first->lock_for_relay();
        try {
            second->lock_for_relay();
            FAIL("locked twice");
        } catch (const StoreError& e) {
            CHECK(e.kind() == StoreError::Kind::locked);
            CHECK(std::string(e.what()).find("another relay is running on it (pid " +
                                             std::to_string(::getpid()) + ")") !=
                  std::string::npos);
        }
        first.reset();
        second->lock_for_relay();  // the lock went with the first store
        // Both may enqueue at once: SQLite serialises the writers.
        auto third = open_sqlite_store(path);
        enqueue(*third, {event("q", "from another process")});
        CHECK(second->claim(now(), 10).size() == 1);
    }
}

TEST_CASE("a full store refuses writes with a clear error and stores nothing of them") {
    TempDir dir;
    SqliteStoreOptions options;
    options.max_file_bytes = 256 * 1024;
    auto store = open_sqlite_store(dir.file("events.db"), options);
    std::vector<NewEvent> batch;
    for (int i = 0; i < 20; ++i) batch.push_back(event("q", std::string(4000, 'f')));
    std::size_t stored = 0;
    try {
        for (int round = 0; round < 100; ++round) stored += enqueue(*store, batch).size();
        FAIL("never full");
    } catch (const StoreError& e) {
        CHECK(e.kind() == StoreError::Kind::full);
        CHECK(std::string(e.what()).find("full") != std::string::npos);
    }
    std::uint64_t pending = 0;
    for (const auto& t : store->summarize()) pending += t.pending;
    CHECK(pending == stored);  // the failed batch left nothing behind
    // Delivering makes room again.
    auto claimed = store->claim(now(), 100);
    std::vector<EventOutcome> done;
    for (const auto& e : claimed) done.push_back(delivered(e.id));
    store->settle(done);
    CHECK(enqueue(*store, batch).size() == 20);
}
