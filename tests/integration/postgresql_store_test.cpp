// The PostgreSQL store against a real PostgreSQL server of the test's own: the schema and
// outbox.enqueue in the application's transactions (committed events delivered, rolled back
// ones never), claims shared by several relays (SKIP LOCKED, leases, group order), a server
// restart under a relay, LISTEN/NOTIFY, and the relay end to end to a local SQS (fauxqs).
#include "catch.hpp"
#include "local_peers.hpp"
#include "postgres_server.hpp"
#include "test_http_server.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/outbox.hpp>
#include <outbox/postgresql_store.hpp>
#include <outbox/sqs_destination.hpp>

#include <libpq-fe.h>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <map>
#include <set>
#include <thread>

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;
using outbox::test::postgres;

namespace {

// A database of its own per test, so tests do not see each other's events.
std::string fresh_database(const std::string& name) {
    postgres().psql("DROP DATABASE IF EXISTS " + name);
    postgres().psql("CREATE DATABASE " + name);
    return "postgresql://outbox@127.0.0.1:" + std::to_string(postgres().port()) + "/" + name;
}

std::string psql_in(const std::string& uri, const std::string& sql) {
    const std::string db = uri.substr(uri.rfind('/') + 1);
    return postgres().psql(sql, db);
}

std::uint64_t count_rows(const std::string& uri, const std::string& where = "true") {
    PGconn* c = PQconnectdb(uri.c_str());
    PGresult* r = PQexec(c, ("SELECT count(*) FROM outbox.events WHERE " + where).c_str());
    const std::uint64_t n = std::strtoull(PQgetvalue(r, 0, 0), nullptr, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

outbox::Message text(std::string body, std::string group = {}) {
    outbox::Message m;
    m.body = std::move(body);
    m.group_id = std::move(group);
    return m;
}

std::vector<outbox::EventId> store_events(outbox::OutboxStore& store, const std::string& target,
                                          const std::vector<outbox::Message>& messages) {
    std::vector<outbox::NewEvent> events;
    for (const auto& m : messages) events.push_back({target, m});
    std::vector<outbox::EventId> ids;
    store.enqueue(events, ids);
    return ids;
}

outbox::EventOutcome delivered(outbox::EventId id) {
    outbox::EventOutcome o;
    o.kind = outbox::EventOutcome::Kind::delivered;
    o.id = id;
    return o;
}

std::function<std::unique_ptr<outbox::Destination>(const std::string&)> sqs_factory(
    asio::io_context& io) {
    return [&io](const std::string& target) {
        outbox::SqsDestinationConfig c;
        // "dead:URL": a queue whose endpoint refuses every connection. "hang:PORT:URL": one
        // whose endpoint (on PORT) never answers.
        const bool dead = target.starts_with("dead:"), hang = target.starts_with("hang:");
        c.queue_url = dead ? target.substr(5) : target;
        c.endpoint = dead ? "http://127.0.0.1:9" : outbox::test::fauxqs().url();
        if (hang) {
            const auto colon = target.find(':', 5);
            c.endpoint = "http://127.0.0.1:" + target.substr(5, colon - 5);
            c.queue_url = target.substr(colon + 1);
            c.max_message_size = 262144;  // no lookup first: the sends themselves hang
        }
        c.region = "us-east-1";
        c.credentials =
            outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"AKID", "s"});
        c.retry.max_attempts = 2;
        c.retry.base_delay = 10ms;
        c.retry.message_deadline = hang ? 120s : 2s;
        c.http.request_timeout = hang ? 120s : 1s;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
}

template <class Done>
bool run_until(asio::io_context& io, Done done, std::chrono::seconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!done() && std::chrono::steady_clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(100));
    return done();
}

}  // namespace

TEST_CASE("the schema is made on first use; outbox.enqueue validates what it is given",
          "[postgresql]") {
    const std::string uri = fresh_database("schema_made");
    auto store = outbox::open_postgresql_store(uri);
    CHECK(store->identity().size() == 16);
    CHECK(store->describe() == uri);
    // A second store (another process starting at the same time) finds it made.
    auto again = outbox::open_postgresql_store(uri);
    CHECK(again->identity() == store->identity());
    CHECK(psql_in(uri, "SELECT value FROM outbox.meta WHERE key = 'schema_version'") == "1");
    CHECK(psql_in(uri, "SELECT outbox.enqueue('q', 'hello')") == "1");
    CHECK_THROWS(psql_in(uri, "SELECT outbox.enqueue('', 'no target')"));
    CHECK_THROWS(psql_in(uri, "SELECT outbox.enqueue('q', 'late', delay_seconds => 901)"));
    CHECK_THROWS(psql_in(uri, "SELECT outbox.enqueue('q', 'x', attributes => '[1]')"));
    const auto e = store->find(1);
    REQUIRE(e);
    CHECK(e->target == "q");
    CHECK(e->message.body == "hello");
    // A password never appears in what the store says about itself.
    CHECK_THROWS_WITH(outbox::open_postgresql_store("postgresql://outbox:hunter2@127.0.0.1:1/x"),
                      !Catch::Contains("hunter2") && Catch::Contains("***"));
}

TEST_CASE("events written in the application's transactions: rolled back ones never exist",
          "[postgresql]") {
    const std::string uri = fresh_database("app_transactions");
    auto store = outbox::open_postgresql_store(uri);
    PGconn* app = PQconnectdb(uri.c_str());
    REQUIRE(PQstatus(app) == CONNECTION_OK);
    std::set<std::string> committed;
    for (int t = 0; t < 200; ++t) {
        PQclear(PQexec(app, "BEGIN"));
        PQclear(PQexec(app, "CREATE TEMP TABLE IF NOT EXISTS orders(n int)"));
        PQclear(PQexec(app, ("INSERT INTO orders VALUES (" + std::to_string(t) + ")").c_str()));
        for (int i = 0; i < 5; ++i) {
            outbox::Message m = text("order " + std::to_string(t) + "/" + std::to_string(i),
                                     i % 2 ? "customer-" + std::to_string(t % 7) : "");
            m.attributes = {{"kind", "String", "order"},
                            {"raw", "Binary", std::string("\0\xff", 2)}};
            CHECK(outbox::enqueue_in_transaction(app, "q", m) > 0);
            if (t % 3 != 0) committed.insert(m.body);
        }
        PQclear(PQexec(app, t % 3 == 0 ? "ROLLBACK" : "COMMIT"));
    }
    PQfinish(app);
    std::set<std::string> stored;
    std::size_t rounds = 0;
    while (true) {
        auto claimed = store->claim(std::chrono::system_clock::now(), 100);
        if (claimed.empty()) break;
        std::vector<outbox::EventOutcome> done;
        for (const auto& e : claimed) {
            CHECK_FALSE(e.damaged);
            REQUIRE(e.message.attributes.size() == 2);
            for (const auto& a : e.message.attributes) {
                if (a.name == "raw") CHECK(a.value == std::string("\0\xff", 2));
                if (a.name == "kind") CHECK(a.value == "order");
            }
            CHECK(stored.insert(e.message.body).second);
            done.push_back(delivered(e.id));
        }
        store->settle(done);
        REQUIRE(++rounds < 100);
    }
    CHECK(stored == committed);
    CHECK(count_rows(uri) == 0);
}

TEST_CASE("a group's events go out one at a time, in order, whichever relay claims",
          "[postgresql]") {
    const std::string uri = fresh_database("group_order");
    auto a = outbox::open_postgresql_store(uri);
    auto b = outbox::open_postgresql_store(uri);
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 300; ++i)
        messages.push_back(text(std::to_string(i), i % 3 == 0 ? "" : "g" + std::to_string(i % 3)));
    store_events(*a, "q", messages);
    std::map<std::string, std::vector<int>> order;  // group -> bodies in delivery order
    std::set<outbox::EventId> seen;
    for (int round = 0; round < 1000; ++round) {
        const auto now = std::chrono::system_clock::now();
        auto from_a = a->claim(now, 50);
        auto from_b = b->claim(now, 50);
        if (from_a.empty() && from_b.empty()) break;
        std::map<std::string, int> heads;  // per group, claimed at this moment
        for (auto* batch : {&from_a, &from_b})
            for (const auto& e : *batch) {
                CHECK(seen.insert(e.id).second);  // never handed out twice
                if (!e.message.group_id.empty()) CHECK(++heads[e.message.group_id] == 1);
                order[e.message.group_id].push_back(std::stoi(e.message.body));
            }
        for (auto [store, batch] : {std::pair{a.get(), &from_a}, std::pair{b.get(), &from_b}}) {
            std::vector<outbox::EventOutcome> done;
            for (const auto& e : *batch) done.push_back(delivered(e.id));
            store->settle(done);
        }
    }
    CHECK(seen.size() == 300);
    for (const auto& [group, bodies] : order)
        if (!group.empty()) CHECK(std::is_sorted(bodies.begin(), bodies.end()));
    CHECK(order["g1"].size() == 100);
}

TEST_CASE("retries, dead letters, redrive and purge keep their meaning", "[postgresql]") {
    const std::string uri = fresh_database("failures");
    auto store = outbox::open_postgresql_store(uri);
    const auto ids = store_events(*store, "q", {text("a", "g"), text("b", "g"), text("c")});
    const auto now = std::chrono::system_clock::now();
    auto claimed = store->claim(now, 10);
    REQUIRE(claimed.size() == 2);  // a (head of g) and c
    outbox::EventOutcome retry;
    retry.kind = outbox::EventOutcome::Kind::retry;
    retry.id = ids[0];
    retry.attempts = 1;
    retry.next_attempt_at = now + 1h;
    retry.error = "HTTP 503 \"busy\"\\ \xff";  // quotes, a backslash, a byte that is not UTF-8
    outbox::EventOutcome dead;
    dead.kind = outbox::EventOutcome::Kind::dead;
    dead.id = ids[2];
    dead.attempts = 1;
    dead.error = "AccessDenied";
    store->settle(std::vector{retry, dead});
    CHECK(store->claim(now, 10).empty());  // a waits an hour; b waits behind it
    auto summary = store->summarize();
    REQUIRE(summary.size() == 1);
    CHECK(summary[0].pending == 2);
    CHECK(summary[0].retrying == 1);
    CHECK(summary[0].dead == 1);
    CHECK(summary[0].last_error == "AccessDenied");
    CHECK(store->find(ids[0])->last_error == "HTTP 503 \"busy\"\\ ?");
    auto letters = store->dead_letters("", 10);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].message.body == "c");
    CHECK(store->redrive("q", now) == 1);
    claimed = store->claim(now, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "c");
    store->settle(std::vector{delivered(ids[2])});
    // An hour later a is due, and b only once a is gone.
    claimed = store->claim(now + 2h, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "a");
    store->settle(std::vector{delivered(ids[0])});
    claimed = store->claim(now + 2h, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "b");
    CHECK(store->purge("q") == 1);
    CHECK_FALSE(store->has_pending());
}

TEST_CASE("a relay that dies holding claims: another takes them over when the lease runs out",
          "[postgresql]") {
    const std::string uri = fresh_database("leases");
    outbox::PostgresqlStoreOptions short_lease;
    short_lease.claim_lease = 2s;
    auto survivor = outbox::open_postgresql_store(uri, short_lease);
    store_events(*survivor, "q", {text("1", "g"), text("2", "g"), text("3")});
    const auto now = std::chrono::system_clock::now();
    {
        auto doomed = outbox::open_postgresql_store(uri, short_lease);
        CHECK(doomed->claim(now, 10).size() == 2);
        // Gone without settling or releasing, as a SIGKILL leaves it.
    }
    CHECK(survivor->claim(now, 10).empty());     // the lease still holds
    auto taken = survivor->claim(now + 3s, 10);  // it has run out
    CHECK(taken.size() == 2);
    std::vector<outbox::EventOutcome> done;
    for (const auto& e : taken) done.push_back(delivered(e.id));
    survivor->settle(done);
    taken = survivor->claim(now + 3s, 10);
    REQUIRE(taken.size() == 1);
    CHECK(taken[0].message.body == "2");
}

TEST_CASE("a server restart under a store: the next call connects again, nothing is lost",
          "[postgresql]") {
    const std::string uri = fresh_database("restart");
    auto store = outbox::open_postgresql_store(uri);
    store_events(*store, "q", {text("before")});
    postgres().restart();
    store_events(*store, "q", {text("after")});
    const auto claimed = store->claim(std::chrono::system_clock::now(), 10);
    CHECK(claimed.size() == 2);
}

TEST_CASE("the relay delivers what the application commits, woken by NOTIFY, not the poll",
          "[postgresql]") {
    const std::string uri = fresh_database("relay_notify");
    const std::string queue = outbox::test::create_queue("outbox-pg-relay");
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_postgresql_store(uri);
    config.make_destination = sqs_factory(io);
    config.retry_schedule = {1s};
    config.poll_interval = std::chrono::hours(1);  // only NOTIFY can wake it in time
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::set<std::string> expected;
    std::string sql = "BEGIN;";
    for (int i = 0; i < 50; ++i) {
        sql += "SELECT outbox.enqueue('" + queue + "', 'committed " + std::to_string(i) + "');";
        expected.insert("committed " + std::to_string(i));
    }
    sql += "COMMIT; BEGIN; SELECT outbox.enqueue('" + queue + "', 'rolled back'); ROLLBACK;";
    // The relay's first claim (it found nothing) is done before the second question is
    // answered: the store's thread takes its work in order.
    for (int i = 0; i < 2; ++i) {
        bool answered = false;
        box.async_has_pending([&](error_code ec, bool any) {
            CHECK_FALSE(ec);
            CHECK_FALSE(any);
            answered = true;
        });
        REQUIRE(run_until(
            io, [&] { return answered; }, 10s));
    }
    psql_in(uri, sql);
    REQUIRE(run_until(
        io, [&] { return box.stats().delivered == 50; }, 30s));
    std::set<std::string> got;
    for (const auto& b : outbox::test::drain_bodies(queue, 30)) CHECK(got.insert(b).second);
    CHECK(got == expected);
    CHECK(count_rows(uri) == 0);
}

TEST_CASE("a poison event and a dead target beside healthy ones: the healthy ones flow",
          "[postgresql]") {
    const std::string uri = fresh_database("isolation");
    const std::string queue = outbox::test::create_queue("outbox-pg-healthy");
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_postgresql_store(uri);
    config.make_destination = sqs_factory(io);
    config.retry_schedule = {1s};
    config.max_age = 1h;
    config.poll_interval = 100ms;
    config.max_in_flight = 64;
    // First in the table: 200 events for a queue nobody answers for, and one event no queue
    // takes (a control character); then the healthy ones.
    psql_in(uri,
            "SELECT outbox.enqueue('dead:http://127.0.0.1:9/000000000000/gone', 'd' || n) "
            "FROM generate_series(1, 200) n");
    psql_in(uri, "SELECT outbox.enqueue('" + queue + "', E'poison \\x01')");
    psql_in(uri, "SELECT outbox.enqueue('" + queue +
                     "', 'healthy ' || n, group_id => 'g' || n % 3) "
                     "FROM generate_series(1, 100) n");
    outbox::Outbox box(io.get_executor(), std::move(config));
    REQUIRE(run_until(
        io, [&] { return box.stats().delivered == 100; }, 60s));
    CHECK(box.stats().retried > 0);  // the dead target's events wait for their next attempt
    CHECK(box.stats().dead == 1);
    const auto seen = outbox::test::drain_bodies(queue, 30);
    CHECK(seen.size() == 100);
    auto store = outbox::open_postgresql_store(uri);
    const auto letters = store->dead_letters("", 10);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].message.body == "poison \x01");
    CHECK_FALSE(letters[0].last_error.empty());
    CHECK(count_rows(uri, "NOT dead AND target LIKE 'dead:%' AND attempts >= 1") == 200);
}

TEST_CASE("a claim renewed while its delivery runs is not taken over; one left alone is",
          "[postgresql]") {
    const std::string uri = fresh_database("renewal");
    outbox::PostgresqlStoreOptions short_lease;
    short_lease.claim_lease = 2s;
    auto slow = outbox::open_postgresql_store(uri, short_lease);
    auto other = outbox::open_postgresql_store(uri, short_lease);
    store_events(*slow, "q", {text("slow", "g"), text("next", "g")});
    const auto now = std::chrono::system_clock::now();
    REQUIRE(slow->claim(now, 10).size() == 1);
    slow->renew_claims(now + 500ms);                // not yet half the lease: nothing to do
    slow->renew_claims(now + 1500ms);               // extended to 2 s from then
    CHECK(other->claim(now + 3s, 10).empty());      // the first lease would have run out
    const auto taken = other->claim(now + 4s, 10);  // not renewed again: it has
    REQUIRE(taken.size() == 1);
    CHECK(taken[0].message.body == "slow");
}

TEST_CASE("a failed lock wait leaves no transaction open: the store goes on", "[postgresql]") {
    const std::string uri = fresh_database("lock_timeout");
    auto store = outbox::open_postgresql_store(uri + "?options=-c%20lock_timeout%3D300");
    store_events(*store, "q", {text("a", "g"), text("b", "g")});
    auto claimed = store->claim(std::chrono::system_clock::now(), 10);
    REQUIRE(claimed.size() == 1);
    // Another session holds the lock a grouped settlement takes.
    PGconn* other = PQconnectdb(uri.c_str());
    PQclear(PQexec(other, "BEGIN"));
    PQclear(PQexec(other, "SELECT pg_advisory_xact_lock(1868724333, 0)"));
    CHECK_THROWS_AS(store->settle(std::vector{delivered(claimed[0].id)}), outbox::StoreError);
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    store->settle(std::vector{delivered(claimed[0].id)});
    claimed = store->claim(std::chrono::system_clock::now(), 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "b");
}

TEST_CASE("a redrive beside a group's head in flight: the group goes on after both fail",
          "[postgresql]") {
    const std::string uri = fresh_database("redrive_in_flight");
    auto store = outbox::open_postgresql_store(uri);
    const auto ids = store_events(*store, "q", {text("1", "g"), text("2", "g"), text("3", "g")});
    const auto now = std::chrono::system_clock::now();
    REQUIRE(store->claim(now, 10).size() == 1);
    outbox::EventOutcome dead;
    dead.kind = outbox::EventOutcome::Kind::dead;
    dead.id = ids[0];
    dead.attempts = 1;
    dead.error = "refused";
    store->settle(std::vector{dead});
    auto claimed = store->claim(now, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "2");
    CHECK(store->redrive("q", now) == 1);  // 1 is older than 2, which is out
    claimed = store->claim(now, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "1");
    // 1 fails for good again, 2 is retried: 2 must head the group, not wait behind nothing.
    outbox::EventOutcome retry;
    retry.kind = outbox::EventOutcome::Kind::retry;
    retry.id = ids[1];
    retry.attempts = 1;
    retry.next_attempt_at = now + 1h;
    retry.error = "busy";
    store->settle(std::vector{dead, retry});
    claimed = store->claim(now + 2h, 10);
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].message.body == "2");
}

TEST_CASE("an event the PostgreSQL store cannot keep is refused alone, at once", "[postgresql]") {
    const std::string uri = fresh_database("refusals");
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_postgresql_store(uri);
    config.relay = false;
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<std::pair<outbox::Message, bool>> cases;  // message, stored
    cases.push_back({text("fine", "g"), true});
    cases.push_back({text("bad group", "g\xff"), false});
    outbox::Message nul = text("nul in an attribute");
    nul.attributes = {{"k", "String", std::string("a\0b", 3)}};
    cases.push_back({nul, false});
    outbox::Message late = text("too late");
    late.delay = std::chrono::seconds(901);
    cases.push_back({late, false});
    cases.push_back({text("fine too"), true});
    std::size_t done = 0;
    for (auto& [message, stored] : cases)
        box.async_enqueue("q", message, [&, ok = stored](error_code ec, outbox::EnqueueResult r) {
            INFO(r.error);
            CHECK((!ec) == ok);
            if (!ok) CHECK(ec == outbox::Errc::invalid_message);
            ++done;
        });
    REQUIRE(run_until(
        io, [&] { return done == cases.size(); }, 10s));
    CHECK(count_rows(uri) == 2);
}

TEST_CASE("a target whose deliveries hang holds only its share; the others flow meanwhile",
          "[postgresql]") {
    const std::string uri = fresh_database("hanging_target");
    const std::string queue = outbox::test::create_queue("outbox-pg-beside-hanging");
    outbox::test::TestHttpServer never([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.action = outbox::test::TestReply::Action::hold;
        return reply;
    });
    const std::string hanging = "hang:" + std::to_string(never.port()) +
                                ":http://sqs.us-east-1.127.0.0.1/000000000000/hanging";
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_postgresql_store(uri);
    config.make_destination = sqs_factory(io);
    config.retry_schedule = {1s};
    config.poll_interval = 100ms;
    config.max_in_flight = 64;
    config.max_in_flight_per_target = 8;
    // Ahead of the healthy events in the table: 200 for the target that never answers.
    psql_in(uri, "SELECT count(outbox.enqueue('" + hanging +
                     "', 'h' || n)) FROM "
                     "generate_series(1, 200) n");
    psql_in(uri, "SELECT count(outbox.enqueue('" + queue +
                     "', 'healthy ' || n)) FROM "
                     "generate_series(1, 100) n");
    outbox::Outbox box(io.get_executor(), std::move(config));
    REQUIRE(run_until(
        io, [&] { return box.stats().delivered == 100; }, 60s));
    // Delivered while every hanging delivery is still out (none has ended), and those are
    // the target's share only.
    CHECK(box.stats().retried == 0);
    CHECK(box.stats().dead == 0);
    CHECK(box.stats().in_flight == 8);
    CHECK(outbox::test::drain_bodies(queue, 30).size() == 100);
}

TEST_CASE("SET outbox.notify = off: an enqueue wakes no listener; on by default", "[postgresql]") {
    const std::string uri = fresh_database("notify_off");
    auto store = outbox::open_postgresql_store(uri);
    // A listening session is told of its own transactions' notifications when they commit.
    PGconn* c = PQconnectdb(uri.c_str());
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PQclear(PQexec(c, "LISTEN outbox_events"));
    auto notified = [&](const char* sql) {
        PQclear(PQexec(c, sql));
        PQconsumeInput(c);
        bool any = false;
        while (PGnotify* n = PQnotifies(c)) {
            any = true;
            PQfreemem(n);
        }
        return any;
    };
    CHECK(notified("SELECT outbox.enqueue('q', 'woken')"));
    PQclear(PQexec(c, "SET outbox.notify = off"));
    CHECK_FALSE(notified("SELECT outbox.enqueue('q', 'found by polling')"));
    PQfinish(c);
    CHECK(count_rows(uri) == 2);
}

TEST_CASE("while a target has no room, claims pass over its backlog and the others share",
          "[postgresql]") {
    const std::string uri = fresh_database("by_target");
    auto store = outbox::open_postgresql_store(uri);
    // Oldest first: a backlog of the full target ahead of the others' events.
    psql_in(uri, "SELECT count(outbox.enqueue('full', 'f' || n)) FROM generate_series(1, 5000) n");
    psql_in(uri, "SELECT count(outbox.enqueue('b', 'b' || n)) FROM generate_series(1, 20) n");
    psql_in(uri, "SELECT count(outbox.enqueue('c', 'c' || n)) FROM generate_series(1, 20) n");
    psql_in(uri, "SELECT count(outbox.enqueue('g', 'g' || n, 'x')) FROM generate_series(1, 3) n");
    auto per_target = [](const std::vector<outbox::StoredEvent>& events) {
        std::map<std::string, int> n;
        for (const auto& e : events) ++n[e.target];
        return n;
    };
    const auto now = std::chrono::system_clock::now();
    // "full" has all 8 of its share out, "b" 3 (5 left); "c" and "g" none yet.
    outbox::TargetBound bound{8, {{"full", 8}, {"b", 3}}};
    const auto first = store->claim(now, 100, bound);
    CHECK(per_target(first) == std::map<std::string, int>{{"b", 5}, {"c", 8}, {"g", 1}});
    for (std::size_t i = 1; i < first.size(); ++i)  // in due order
        CHECK(first[i - 1].next_attempt_at <= first[i].next_attempt_at);
    // An equal share of the claim each: 2 + 2 of b and c, the group's head being out.
    auto other = outbox::open_postgresql_store(uri);
    const auto shared = other->claim(now, 4, outbox::TargetBound{100, {{"full", 100}}});
    CHECK(per_target(shared) == std::map<std::string, int>{{"b", 2}, {"c", 2}});
    // Without a bound the oldest come first: the full target's.
    const auto unbounded = other->claim(now, 10);
    CHECK(per_target(unbounded) == std::map<std::string, int>{{"full", 10}});
    // Capped targets (open breakers): 0 passes "full" over with no bound per target; 1
    // takes exactly its oldest (a probe).
    outbox::TargetBound refusing;
    refusing.cap = {{"full", 0}};
    CHECK(per_target(other->claim(now, 4, refusing)) ==
          std::map<std::string, int>{{"b", 2}, {"c", 2}});
    outbox::TargetBound probing{100, {}, {{"full", 1}}};
    const auto probe = other->claim(now, 100, probing);
    CHECK(per_target(probe) == std::map<std::string, int>{{"b", 11}, {"c", 8}, {"full", 1}});
    for (const auto& e : probe)  // its oldest not yet claimed (f1 to f10 went unbounded)
        if (e.target == "full") CHECK(e.message.body == "f11");
    // A database made before the index existed gets it from the next store that opens it.
    psql_in(uri, "DROP INDEX outbox.events_target_ready");
    auto later = outbox::open_postgresql_store(uri);
    CHECK(psql_in(uri, "SELECT to_regclass('outbox.events_target_ready') IS NOT NULL") == "t");
}

TEST_CASE("relays' breakers are kept per relay: the last written shows, each forgets its own",
          "[postgresql]") {
    const std::string uri = fresh_database("breakers");
    auto first = outbox::open_postgresql_store(uri);
    auto second = outbox::open_postgresql_store(uri);
    store_events(*first, "broken", {text("x")});
    auto health_of = [&](outbox::OutboxStore& s, const std::string& target) {
        for (const auto& t : s.summarize())
            if (t.target == target) return t;
        return outbox::TargetSummary{};
    };
    outbox::TargetBreakerState state;
    state.target = "broken";
    state.health = outbox::TargetHealth::degraded;
    state.consecutive_failures = 2;
    state.failing_since = std::chrono::system_clock::now();
    state.last_error = "timed out";
    first->save_breaker(state);
    state.health = outbox::TargetHealth::open;
    state.consecutive_failures = 5;
    state.next_probe_at = std::chrono::system_clock::now() + std::chrono::seconds(30);
    second->save_breaker(state);
    auto seen = health_of(*first, "broken");
    CHECK(seen.health == outbox::TargetHealth::open);  // the second relay wrote last
    CHECK(seen.consecutive_failures == 5);
    CHECK(seen.pending == 1);
    REQUIRE(seen.next_probe_at);
    CHECK(std::chrono::abs(*seen.next_probe_at - state.next_probe_at.value()) <
          std::chrono::seconds(1));
    second->forget_breakers();  // the second stops: the first's breaker shows again
    CHECK(health_of(*first, "broken").health == outbox::TargetHealth::degraded);
    state.health = outbox::TargetHealth::healthy;
    first->save_breaker(state);
    CHECK(health_of(*second, "broken").health == outbox::TargetHealth::healthy);
    // Rows no relay has kept fresh for 10 minutes are a dead relay's: not shown, and the next
    // relay to start drops them.
    state.health = outbox::TargetHealth::open;
    second->save_breaker(state);
    CHECK(health_of(*first, "broken").health == outbox::TargetHealth::open);
    psql_in(uri, "UPDATE outbox.breakers SET updated_at = now() - interval '11 minutes'");
    CHECK(health_of(*first, "broken").health == outbox::TargetHealth::healthy);
    outbox::open_postgresql_store(uri)->forget_breakers();
    CHECK(psql_in(uri, "SELECT count(*) FROM outbox.breakers") == "0");
    // A relay with a breaker rewrites its rows' time as it renews its claims.
    second->save_breaker(state);
    psql_in(uri, "UPDATE outbox.breakers SET updated_at = now() - interval '5 minutes'");
    second->renew_claims(std::chrono::system_clock::now());
    CHECK(psql_in(uri,
                  "SELECT count(*) FROM outbox.breakers WHERE updated_at > now() - "
                  "interval '1 minute'") == "1");
    // A database of the first release gets the table from the next store that opens it.
    psql_in(uri, "DROP TABLE outbox.breakers");
    auto later = outbox::open_postgresql_store(uri);
    CHECK(psql_in(uri, "SELECT to_regclass('outbox.breakers') IS NOT NULL") == "t");
}

TEST_CASE(
    "a role with only the documented privileges opens, enqueues and claims; without the "
    "target index too",
    "[postgresql]") {
    const std::string uri = fresh_database("least_privilege");
    outbox::open_postgresql_store(uri);  // made by the owner
    postgres().psql("DROP ROLE IF EXISTS outbox_relay_only");
    postgres().psql("CREATE ROLE outbox_relay_only LOGIN");
    psql_in(uri,
            "GRANT USAGE ON SCHEMA outbox TO outbox_relay_only; "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA outbox TO "
            "outbox_relay_only; "
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO outbox_relay_only");
    const std::string limited =
        "postgresql://outbox_relay_only@127.0.0.1:" + std::to_string(postgres().port()) +
        "/least_privilege";
    auto check_works = [&](const std::string& label) {
        INFO(label);
        auto store = outbox::open_postgresql_store(limited);
        const auto ids = store_events(*store, "q", {text("one"), text("two")});
        REQUIRE(ids.size() == 2);
        // The claim that passes over a full target, then the one in due order.
        const auto now = std::chrono::system_clock::now();
        CHECK(store->claim(now, 10, outbox::TargetBound{8, {{"full", 8}}}).size() == 2);
        std::vector<outbox::EventOutcome> done;
        for (auto id : ids) done.push_back(delivered(id));
        store->settle(done);
        CHECK(count_rows(uri) == 0);
    };
    check_works("the schema current: opening creates nothing");
    // A database of the first release: this role may not add the index, and goes on without.
    psql_in(uri, "DROP INDEX outbox.events_target_ready");
    check_works("without events_target_ready");
    CHECK(psql_in(uri, "SELECT to_regclass('outbox.events_target_ready') IS NULL") == "t");
    // outbox.breakers made after this role's grants: it neither reads nor writes it, and
    // summaries (inspect) and breakers go on without it.
    psql_in(uri, "REVOKE ALL ON outbox.breakers FROM outbox_relay_only");
    check_works("without privileges on outbox.breakers");
    auto store = outbox::open_postgresql_store(limited);
    outbox::TargetBreakerState open;
    open.target = "q";
    open.health = outbox::TargetHealth::open;
    CHECK_NOTHROW(store->save_breaker(open));
    CHECK_NOTHROW(store->summarize());
    CHECK_NOTHROW(store->forget_breakers());
}
