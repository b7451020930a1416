// The program's store commands on a postgresql:// store, against a PostgreSQL server of the
// test's own and fauxqs: the schema made by the first command, events from the program and
// from the application's SQL delivered together, dead letters, redrive, purge, a password kept
// out of messages, and a relay that goes on across a server restart.
#include "catch.hpp"
#include "local_peers.hpp"
#include "postgres_server.hpp"
#include "program_run.hpp"

#include <simdjson.h>

#include <signal.h>

#include <fstream>
#include <set>
#include <thread>

using outbox::test::postgres;
using outbox::test::ProgramOptions;
using outbox::test::ProgramRun;
using outbox::test::run_program;
using outbox::test::TempDir;
using namespace std::chrono_literals;

namespace {

ProgramOptions keys() {
    ProgramOptions o;
    o.unset_env = {"AWS_SESSION_TOKEN", "AWS_PROFILE",          "AWS_REGION",  "AWS_DEFAULT_REGION",
                   "AWS_ENDPOINT_URL",  "AWS_ENDPOINT_URL_SQS", "OUTBOX_DEBUG"};
    o.set_env = {"AWS_ACCESS_KEY_ID=AKIDOUTBOXTEST", "AWS_SECRET_ACCESS_KEY=outbox-test-secret",
                 "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/nonexistent",
                 "AWS_SHARED_CREDENTIALS_FILE=/nonexistent"};
    o.kill_after = 90s;
    return o;
}

std::vector<std::string> outbox_args(std::vector<std::string> rest) {
    std::vector<std::string> argv = {OUTBOX_CLI_PATH};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

std::string fresh_database(const std::string& name) {
    postgres().psql("DROP DATABASE IF EXISTS " + name);
    postgres().psql("CREATE DATABASE " + name);
    return "postgresql://outbox@127.0.0.1:" + std::to_string(postgres().port()) + "/" + name;
}

std::string database_of(const std::string& uri) {
    return uri.substr(uri.rfind('/') + 1);
}

struct Totals {
    std::uint64_t pending = 0, dead = 0;
};

Totals inspect(const std::string& store) {
    const ProgramRun r = run_program(outbox_args({"inspect", "--store", store, "--json"}), keys());
    INFO(r.err);
    REQUIRE(r.status == 0);
    simdjson::dom::parser parser;
    Totals t;
    for (simdjson::dom::object target : parser.parse(r.out)["targets"].get_array()) {
        t.pending += std::uint64_t(target["pending"]);
        t.dead += std::uint64_t(target["dead"]);
    }
    return t;
}

}  // namespace

TEST_CASE("every store command takes a postgresql:// URI; the first one makes the schema",
          "[postgresql]") {
    TempDir dir;
    const std::string store = fresh_database("cli_commands");
    const std::string queue = outbox::test::create_queue("cli-pg-commands");
    // A new database: inspect leaves it ready for the application's outbox.enqueue.
    CHECK(inspect(store).pending == 0);
    postgres().psql("BEGIN; SELECT outbox.enqueue('" + queue +
                        "', 'from SQL ' || n) FROM "
                        "generate_series(1, 10) n; COMMIT; BEGIN; SELECT outbox.enqueue('" +
                        queue + "', 'rolled back'); ROLLBACK;",
                    database_of(store));
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 50; ++i) in << "{\"event\":" << i << "}\n";
    }
    const ProgramRun e = run_program(
        outbox_args({"enqueue", "--store", store, "--to", queue, dir.file("in.jsonl")}), keys());
    INFO(e.err);
    REQUIRE(e.status == 0);
    CHECK(inspect(store).pending == 60);
    // One event for a queue that does not exist: a dead letter.
    postgres().psql("SELECT outbox.enqueue('" + queue + "-missing', 'nowhere')",
                    database_of(store));
    const ProgramRun r = run_program(outbox_args({"relay", "--store", store, "--endpoint",
                                                  outbox::test::fauxqs().url(), "--until-empty"}),
                                     keys());
    INFO(r.err);
    CHECK(r.status == 1);  // dead letters are left
    CHECK(contains(r.err, "delivered 60, retried 0, dead 1"));
    const auto bodies = outbox::test::drain_bodies(queue, 30);
    CHECK(bodies.size() == 60);
    CHECK(std::set<std::string>(bodies.begin(), bodies.end()).count("rolled back") == 0);
    CHECK(inspect(store).dead == 1);
    const ProgramRun redrive = run_program(
        outbox_args({"redrive", "--store", store, "--target", queue + "-missing"}), keys());
    INFO(redrive.err);
    CHECK(redrive.status == 0);
    CHECK(inspect(store).pending == 1);
    const ProgramRun purge = run_program(
        outbox_args({"purge", "--store", store, "--target", queue + "-missing"}), keys());
    CHECK(purge.status == 0);
    CHECK(inspect(store).pending == 0);
}

TEST_CASE("a postgresql:// store that cannot be reached: exit 2, and the password never shown",
          "[postgresql]") {
    const ProgramRun r = run_program(
        outbox_args({"inspect", "--store", "postgresql://outbox:hunter2@127.0.0.1:1/none"}),
        keys());
    CHECK(r.status == 2);
    CHECK(contains(r.err, "postgresql://outbox:***@127.0.0.1:1/none"));
    CHECK_FALSE(contains(r.err + r.out, "hunter2"));
    // A password with a '/' libpq would split: refused before connecting, no piece shown.
    const ProgramRun slash = run_program(
        outbox_args({"inspect", "--store", "postgresql://outbox:Xy/hunter2@127.0.0.1:1/none"}),
        keys());
    CHECK(slash.status == 2);
    CHECK(contains(slash.err, "postgresql://***@127.0.0.1:1/none"));
    CHECK(contains(slash.err, "must be written %2F"));
    CHECK_FALSE(contains(slash.err + slash.out, "Xy"));
    CHECK_FALSE(contains(slash.err + slash.out, "hunter2"));
    const ProgramRun sqlite_lease =
        run_program(outbox_args({"relay", "--store", "events.db", "--claim-lease", "1m"}), keys());
    CHECK(sqlite_lease.status == 2);
    CHECK(contains(sqlite_lease.err, "--claim-lease is for a postgresql:// store"));
}

TEST_CASE("a relay goes on across a restart of the database server; nothing is lost",
          "[postgresql]") {
    const std::string store = fresh_database("cli_restart");
    const std::string db = database_of(store);
    const std::string queue = outbox::test::create_queue("cli-pg-restart");
    CHECK(inspect(store).pending == 0);
    // Waits (bounded) until the relay has emptied the store.
    auto drained = [&] {
        for (int i = 0; i < 600; ++i) {
            if (postgres().psql("SELECT count(*) FROM outbox.events", db) == "0") return true;
            std::this_thread::sleep_for(50ms);  // polling the store, bounded
        }
        return false;
    };
    bool before = false, after = false;
    ProgramOptions options = keys();
    options.while_running = [&](pid_t relay) {
        postgres().psql("SELECT outbox.enqueue('" + queue +
                            "', 'before ' || n) FROM "
                            "generate_series(1, 20) n",
                        db);
        before = drained();
        postgres().restart();
        postgres().psql("SELECT outbox.enqueue('" + queue +
                            "', 'after ' || n) FROM "
                            "generate_series(1, 20) n",
                        db);
        after = drained();
        ::kill(relay, SIGTERM);
    };
    const ProgramRun r = run_program(
        outbox_args({"relay", "--store", store, "--endpoint", outbox::test::fauxqs().url()}),
        options);
    INFO(r.err);
    CHECK(before);
    CHECK(after);
    CHECK(r.status == 0);  // stopped by SIGTERM: a clean stop
    const auto bodies = outbox::test::drain_bodies(queue, 30);
    const std::set<std::string> distinct(bodies.begin(), bodies.end());
    CHECK(distinct.size() == 40);
}

TEST_CASE("three relays on one store, none killed: every event delivered exactly once",
          "[postgresql]") {
    const std::string store = fresh_database("cli_three_relays");
    const std::string db = database_of(store);
    const std::string queue = outbox::test::create_queue("cli-pg-three-relays");
    CHECK(inspect(store).pending == 0);
    postgres().psql("SELECT count(outbox.enqueue('" + queue +
                        "', 'e' || n, group_id => CASE WHEN "
                        "n % 4 = 1 THEN 'g' || (n % 3) END)) FROM generate_series(1, 3000) n",
                    db);
    const std::vector<std::string> relay = outbox_args(
        {"relay", "--store", store, "--endpoint", outbox::test::fauxqs().url(), "--until-empty"});
    // Each relay starts the next one while it runs: three at once on the same backlog.
    std::vector<ProgramRun> runs(3);
    ProgramOptions third = keys(), second = keys(), first = keys();
    second.while_running = [&](pid_t) { runs[2] = run_program(relay, third); };
    first.while_running = [&](pid_t) { runs[1] = run_program(relay, second); };
    runs[0] = run_program(relay, first);
    std::uint64_t delivered = 0;
    for (const ProgramRun& r : runs) {
        INFO(r.err);
        CHECK(r.status == 0);
        const auto at = r.err.find("delivered ");
        REQUIRE(at != std::string::npos);
        delivered += std::stoull(r.err.substr(at + 10));
    }
    CHECK(delivered == 3000);  // no event delivered by two relays
    const auto bodies = outbox::test::drain_bodies(queue, 60);
    CHECK(bodies.size() == 3000);
    CHECK(std::set<std::string>(bodies.begin(), bodies.end()).size() == 3000);
}
