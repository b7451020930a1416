// `outbox enqueue`, `relay`, `inspect`, `redrive` and `purge`: the real program against a
// store file, fauxqs behind the signature-checking proxy, and a server that never answers.
#include "catch.hpp"
#include "local_peers.hpp"
#include "peer_process.hpp"
#include "program_run.hpp"
#include "sigv4_proxy.hpp"
#include "test_http_server.hpp"

#include <simdjson.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

using outbox::test::how_it_ended;
using outbox::test::ProgramOptions;
using outbox::test::ProgramRun;
using outbox::test::read_lines;
using outbox::test::run_program;
using outbox::test::TempDir;
using namespace std::chrono_literals;

namespace {

const std::string access_key = "AKIDOUTBOXTEST";
const std::string secret_key = "outbox-test-secret";

ProgramOptions keys() {
    ProgramOptions o;
    o.unset_env = {"AWS_SESSION_TOKEN", "AWS_PROFILE",          "AWS_REGION",  "AWS_DEFAULT_REGION",
                   "AWS_ENDPOINT_URL",  "AWS_ENDPOINT_URL_SQS", "OUTBOX_DEBUG"};
    o.set_env = {"AWS_ACCESS_KEY_ID=" + access_key, "AWS_SECRET_ACCESS_KEY=" + secret_key,
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

struct Totals {
    std::uint64_t pending = 0, dead = 0;
    std::string last_error;
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
        if (target["last_error"].is_string())
            t.last_error = std::string(std::string_view(target["last_error"]));
    }
    return t;
}

outbox::test::SigV4Proxy& proxy() {
    static outbox::test::SigV4Proxy p(outbox::test::fauxqs().port(), "sqs", access_key, secret_key);
    return p;
}

}  // namespace

TEST_CASE("enqueue stores every line durably, relay delivers them all and stops when empty") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string queue = outbox::test::create_queue("cli-outbox-basic");
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 120; ++i) in << "{\"event\":" << i << "}\n";
    }
    const ProgramRun e =
        run_program(outbox_args({"enqueue", "--store", store, "--to", queue, "--report",
                                 dir.file("stored.jsonl"), dir.file("in.jsonl")}),
                    keys());
    INFO(e.err);
    REQUIRE(e.status == 0);
    CHECK(contains(e.err, "stored 120, refused 0"));
    const auto report = read_lines(dir.file("stored.jsonl"));
    REQUIRE(report.size() == 120);
    CHECK(contains(report[0], "\"status\":\"stored\",\"id\":\""));
    CHECK(inspect(store).pending == 120);

    const ProgramRun r =
        run_program(outbox_args({"relay", "--store", store, "--endpoint", proxy().process.url(),
                                 "--until-empty", "--report", dir.file("relayed.jsonl")}),
                    keys());
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(contains(r.err, "delivered 120, retried 0, dead 0"));
    CHECK(read_lines(dir.file("relayed.jsonl")).size() == 120);
    CHECK(inspect(store).pending == 0);
    const auto bodies = outbox::test::receive_bodies(queue, 120, 30);
    CHECK(bodies.size() == 120);
    CHECK(proxy().stat("signature_failures") == 0);
}

TEST_CASE("a relay's report reaches its file as it runs: one killed keeps its lines") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string queue = outbox::test::create_queue("cli-outbox-report-flushed");
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 5; ++i) in << "{\"event\":" << i << "}\n";
    }
    REQUIRE(
        run_program(outbox_args({"enqueue", "--store", store, "--to", queue, dir.file("in.jsonl")}),
                    keys())
            .status == 0);
    const std::string report = dir.file("relayed.jsonl");
    ProgramOptions o = keys();
    std::size_t lines_while_running = 0;
    o.while_running = [&](pid_t pid) {
        // A relay without --until-empty runs until stopped: its five lines must reach the
        // file while it runs (a few KiB, far below what its buffer holds before writing).
        for (int i = 0; i < 600 && lines_while_running < 5; ++i) {
            lines_while_running = read_lines(report).size();
            if (lines_while_running < 5) std::this_thread::sleep_for(50ms);  // polling the file
        }
        ::kill(pid, SIGKILL);
    };
    const ProgramRun r = run_program(outbox_args({"relay", "--store", store, "--endpoint",
                                                  proxy().process.url(), "--report", report}),
                                     o);
    CHECK(lines_while_running == 5);
    const auto lines = read_lines(report);
    REQUIRE(lines.size() == 5);
    for (const auto& line : lines) CHECK(contains(line, "\"status\":\"delivered\""));
}

TEST_CASE("enqueue of more events than its window (8192) holds: all stored, none lost") {
    // The reader outruns the store's commits, fills the window, waits for an eighth of it to
    // free up, and goes on until every line is stored and reported.
    TempDir dir;
    const std::string store = dir.file("many.db");
    const int events = 20000;
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < events; ++i) in << "{\"event\":" << i << "}\n";
    }
    const ProgramRun e = run_program(
        outbox_args({"enqueue", "--store", store, "--to", "http://127.0.0.1:1/000000000000/many",
                     "--report", dir.file("stored.jsonl"), dir.file("in.jsonl")}),
        keys());
    INFO(e.err);
    REQUIRE(e.status == 0);
    CHECK(contains(e.err, "stored " + std::to_string(events) + ", refused 0"));
    CHECK(read_lines(dir.file("stored.jsonl")).size() == static_cast<std::size_t>(events));
    CHECK(inspect(store).pending == static_cast<std::size_t>(events));
}

TEST_CASE("enqueue refuses what can never be delivered, line by line, and says why") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string queue = outbox::test::create_queue("cli-outbox-refusals");
    {
        std::ofstream in(dir.file("in.jsonl"));
        in << "{\"body\":\"fine\"}\n"
           << "{\"body\":\"a control \\u0001 character\"}\n"
           << "{\"body\":\"nowhere\",\"to\":\"\"}\n"
           << "{\"body\":\"elsewhere\",\"to\":\"" << queue << "-other\"}\n"
           << "not json\n"
           // Targets changing from line to line: each line is judged by its own.
           << "{\"body\":\"late\",\"to\":\"kafka://127.0.0.1:9/t\",\"delay\":5}\n"
           << "{\"body\":\"back\"}\n"
           << "{\"body\":\"lost\",\"to\":\"https://example.com\"}\n"
           << "{\"body\":\"again \\u0002\",\"to\":\"https://example.com\"}\n"
           << "{\"body\":\"ordered\",\"to\":\"" << queue << ".fifo\"}\n"
           << "{\"body\":\"ordered\",\"to\":\"" << queue << ".fifo\",\"group_id\":\"g\"}\n";
    }
    const ProgramRun e =
        run_program(outbox_args({"enqueue", "--store", store, "--objects", "--to", queue,
                                 "--report", dir.file("report.jsonl"), dir.file("in.jsonl")}),
                    keys());
    INFO(e.err);
    CHECK(e.status == 1);
    CHECK(contains(e.err, "stored 4, refused 7"));
    std::map<int, std::string> lines;
    simdjson::dom::parser parser;
    for (const auto& l : read_lines(dir.file("report.jsonl"))) {
        simdjson::dom::object o = parser.parse(l);
        lines[static_cast<int>(std::int64_t(o["index"]))] = l;
    }
    CHECK(contains(lines[0], "\"stored\""));
    CHECK(contains(lines[1], "character SQS does not accept at byte 10"));
    CHECK(contains(lines[2], "field \\\"to\\\" must be a non-empty string"));
    CHECK(contains(lines[3], "\"stored\""));
    CHECK(contains(lines[4], "line 5"));
    CHECK(contains(lines[5], "Kafka has no delivery delay"));
    CHECK(contains(lines[6], "\"stored\""));
    CHECK(contains(lines[7], "is neither an SQS queue URL"));
    CHECK(contains(lines[8], "is neither an SQS queue URL"));
    CHECK(contains(lines[9], "a FIFO queue needs a group id on every message"));
    CHECK(contains(lines[10], "\"stored\""));
}

TEST_CASE("dead letters stay in the store: inspect shows them, redrive and purge act on them") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string missing = outbox::test::fauxqs().url() + "/000000000000/cli-outbox-missing";
    {
        std::ofstream in(dir.file("in.jsonl"));
        in << "lost in the post\n";
    }
    REQUIRE(run_program(
                outbox_args({"enqueue", "--store", store, "--to", missing, dir.file("in.jsonl")}),
                keys())
                .status == 0);
    const ProgramRun r = run_program(outbox_args({"relay", "--store", store, "--endpoint",
                                                  proxy().process.url(), "--until-empty"}),
                                     keys());
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "1 dead letters are left"));
    Totals t = inspect(store);
    CHECK(t.pending == 0);
    CHECK(t.dead == 1);
    CHECK((contains(t.last_error, "QueueDoesNotExist") ||
           contains(t.last_error, "NonExistentQueue")));
    const ProgramRun table = run_program(outbox_args({"inspect", "--store", store}), keys());
    CHECK(contains(table.out, missing));
    const ProgramRun redrive = run_program(outbox_args({"redrive", "--store", store}), keys());
    CHECK(redrive.status == 0);
    CHECK(redrive.out == "redriven 1\n");
    CHECK(inspect(store).pending == 1);
    const ProgramRun purge =
        run_program(outbox_args({"purge", "--store", store, "--target", missing}), keys());
    CHECK(purge.out == "purged 1\n");
    t = inspect(store);
    CHECK(t.pending + t.dead == 0);
}

TEST_CASE("SIGTERM stops a relay within its grace; what it could not deliver stays stored") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    outbox::test::TestHttpServer silent([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.action = outbox::test::TestReply::Action::hold;
        return reply;
    });
    const std::string queue = silent.url("/000000000000/silent");
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 10; ++i) in << "waiting " << i << "\n";
    }
    REQUIRE(
        run_program(outbox_args({"enqueue", "--store", store, "--to", queue, dir.file("in.jsonl")}),
                    keys())
            .status == 0);
    std::chrono::steady_clock::time_point signalled;
    ProgramOptions o = keys();
    o.while_running = [&](pid_t pid) {
        REQUIRE(silent.wait_for_requests(1, 30s));
        signalled = std::chrono::steady_clock::now();
        ::kill(pid, SIGTERM);
    };
    const ProgramRun r = run_program(outbox_args({"relay", "--store", store, "--grace", "1"}), o);
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(std::chrono::steady_clock::now() - signalled < 8s);
    CHECK(contains(r.err, "SIGTERM: no new deliveries"));
    CHECK(inspect(store).pending == 10);  // nothing lost, nothing dead
}

TEST_CASE("relay bounds that are not counts are usage errors, never \"no bound\"") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--max-in-flight-per-target", ""},
          {"--max-in-flight-per-target", "abc"},
          {"--max-in-flight-per-target", "99999999999999999999"},
          {"--max-in-flight-per-target", "-1"},
          {"--max-in-flight", "0"},
          {"--max-in-flight", "2000000"},
          {"--max-in-flight"}}) {
        std::vector<std::string> args{"relay", "--store", store, "--until-empty"};
        args.insert(args.end(), bad.begin(), bad.end());
        const ProgramRun r = run_program(outbox_args(args), keys());
        INFO(bad.front() << " " << (bad.size() > 1 ? bad[1] : "(nothing)"));
        CHECK(r.status == 2);
        CHECK(contains(r.err, bad.front() + " must be"));
    }
}

TEST_CASE("durations past a century are usage errors, not a clock that overflows") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    for (const std::vector<std::string>& bad : {std::vector<std::string>{"--max-age", "100000d"},
                                                {"--max-age", "9223372036854775807s"},
                                                {"--retry-schedule", "5s,36501d"}}) {
        std::vector<std::string> args{"relay", "--store", store, "--until-empty"};
        args.insert(args.end(), bad.begin(), bad.end());
        const ProgramRun r = run_program(outbox_args(args), keys());
        INFO(bad[0] << " " << bad[1]);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "relay: " + bad[0]));
        CHECK(contains(r.err, "at most 36500d"));
    }
}

TEST_CASE("a report that names the store's file is refused before it is written") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string input = dir.file("in.jsonl");
    { std::ofstream(input) << "{\"n\":1}\n"; }
    const ProgramRun stored =
        run_program(outbox_args({"enqueue", "--store", store, "--to",
                                 "https://sqs.us-east-1.amazonaws.com/1/q", input}),
                    keys());
    REQUIRE(stored.status == 0);
    const ProgramRun linked_enqueue = run_program(
        outbox_args({"enqueue", "--store", store, "--to", "https://sqs.us-east-1.amazonaws.com/1/q",
                     "--report", store, input}),
        keys());
    CHECK(linked_enqueue.status == 2);
    CHECK(contains(linked_enqueue.err, "is the store's file"));
    REQUIRE(::link(store.c_str(), dir.file("other-name.db").c_str()) == 0);
    const ProgramRun relay = run_program(outbox_args({"relay", "--store", store, "--until-empty",
                                                      "--report", dir.file("other-name.db")}),
                                         keys());
    CHECK(relay.status == 2);
    CHECK(contains(relay.err,
                   "relay: the report " + dir.file("other-name.db") + " is the store's file"));
    // The files beside it too: the relay's lock file, say.
    const ProgramRun lock = run_program(outbox_args({"relay", "--store", store, "--until-empty",
                                                     "--report", store + "-relay.lock"}),
                                        keys());
    CHECK(lock.status == 2);
    CHECK(contains(lock.err, "is the store's file"));
    // The event is still there.
    const ProgramRun inspect = run_program(outbox_args({"inspect", "--store", store}), keys());
    CHECK(inspect.status == 0);
    CHECK(contains(inspect.out, "sqs.us-east-1.amazonaws.com"));
}

TEST_CASE("stores that cannot be used are usage errors naming the file; one relay at a time") {
    TempDir dir;
    const ProgramRun missing =
        run_program(outbox_args({"inspect", "--store", dir.file("no/such/dir/events.db")}), keys());
    CHECK(missing.status == 2);
    CHECK(contains(missing.err, "its directory does not exist"));
    { std::ofstream(dir.file("text.db")) << std::string(10000, 't'); }
    const ProgramRun text =
        run_program(outbox_args({"inspect", "--store", dir.file("text.db")}), keys());
    CHECK(text.status == 2);
    CHECK(contains(text.err, "not an SQLite file"));

    const std::string store = dir.file("events.db");
    ProgramOptions o = keys();
    ProgramRun second;
    pid_t first_pid = -1;
    o.while_running = [&](pid_t pid) {
        // Once the first relay holds the store (it writes its pid into the lock file), a
        // second one is refused, naming it; then the first is stopped.
        const std::string holder = "pid " + std::to_string(pid);
        first_pid = pid;
        bool held = false;
        for (int i = 0; i < 200 && !held; ++i) {
            std::ifstream lock(store + "-relay.lock");
            std::string line;
            held = std::getline(lock, line) && line == holder;
            if (!held) std::this_thread::sleep_for(50ms);  // polling the file, not a guess
        }
        REQUIRE(held);
        second = run_program(outbox_args({"relay", "--store", store, "--until-empty"}), keys());
        ::kill(pid, SIGTERM);
    };
    const ProgramRun first = run_program(outbox_args({"relay", "--store", store}), o);
    CHECK(first.status == 0);
    CHECK(second.status == 2);
    CHECK(contains(second.err,
                   "another relay is running on it (pid " + std::to_string(first_pid) + ")"));
}

TEST_CASE("inspect --check reads the whole file: a damaged store is named, a sound one is ok") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 2000; ++i)
            in << "{\"event\":" << i << ",\"pad\":\"" << std::string(300, 'p') << "\"}\n";
    }
    const ProgramRun e =
        run_program(outbox_args({"enqueue", "--store", store, "--to",
                                 "https://sqs.eu-west-1.amazonaws.com/1/q", dir.file("in.jsonl")}),
                    keys());
    REQUIRE(e.status == 0);
    const ProgramRun sound =
        run_program(outbox_args({"inspect", "--store", store, "--json", "--check"}), keys());
    INFO(sound.err);
    CHECK(sound.status == 0);
    CHECK(contains(sound.out, "\"pending\":2000"));
    CHECK(contains(sound.out, "\"integrity_check\":\"ok\""));
    {  // a bad disk's scribble over a page in the middle of a cleanly closed file
        std::fstream f(store, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(store) / 2));
        const std::string junk(4096, '\x5a');
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    const ProgramRun damaged =
        run_program(outbox_args({"inspect", "--store", store, "--check"}), keys());
    CHECK(damaged.status == 2);
    CHECK(contains(damaged.err, store));
    CHECK(contains(damaged.err, "fails its integrity check"));
    const ProgramRun on_postgresql = run_program(
        outbox_args({"inspect", "--store", "postgresql://127.0.0.1:1/outbox", "--check"}), keys());
    CHECK(on_postgresql.status == 2);
    CHECK(contains(on_postgresql.err, "--check reads an SQLite file"));
}

namespace {

// A 96 MiB tmpfs mounted for the test (a disk that really fills, not a configured limit);
// root only.
struct SmallDisk {
    std::string path;
    bool mounted = false;
    explicit SmallDisk(std::string where) : path(std::move(where)) {
        std::filesystem::create_directories(path);
        std::string out;
        mounted =
            ::geteuid() == 0 &&
            outbox::test::run_command(
                {"mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", path}, out) == 0;
    }
    ~SmallDisk() {
        std::string out;
        if (mounted) outbox::test::run_command({"umount", "-l", path}, out);
    }
};

}  // namespace

TEST_CASE(
    "a full disk: lines that do not fit are refused with the cause; what was stored is "
    "delivered") {
    TempDir dir;
    SmallDisk disk(dir.file("small"));
    if (!disk.mounted) {
        WARN("skipped: mounting a 96 MiB tmpfs needs root");
        return;
    }
    const std::string store = disk.path + "/events.db";
    const std::string queue = outbox::test::create_queue("cli-outbox-full-disk");
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 6000; ++i)
            in << "{\"event\":" << i << ",\"pad\":\"" << std::string(12000, 'p') << "\"}\n";
    }
    const ProgramRun e =
        run_program(outbox_args({"enqueue", "--store", store, "--to", queue, "--report",
                                 dir.file("stored.jsonl"), dir.file("in.jsonl")}),
                    keys());
    INFO(e.err);
    CHECK(e.status == 2);
    CHECK(contains(e.err, "full"));
    std::set<int> stored;
    std::size_t refused = 0;
    simdjson::dom::parser parser;
    for (const auto& line : read_lines(dir.file("stored.jsonl"))) {
        simdjson::dom::object o = parser.parse(line);
        if (std::string_view(o["status"]) == "stored") {
            stored.insert(static_cast<int>(std::int64_t(o["index"])));
        } else {
            ++refused;
            CHECK(contains(std::string(std::string_view(o["error"])), "full"));
        }
    }
    CHECK(stored.size() + refused == 6000);  // every line has its outcome
    // 64 MiB of the 96 stay free for the relay (min_free_disk_bytes); a commit (at most 8 MiB
    // of bodies) is all or nothing, so how many fit depends on how lines fell into commits.
    REQUIRE(stored.size() > 500);
    REQUIRE(refused > 100);
    CHECK(inspect(store).pending == stored.size());

    // Deliveries free room on the same full disk: the relay empties the store.
    // A step of 1 s: an attempt that fails on a loaded machine is retried within the run.
    const ProgramRun r =
        run_program(outbox_args({"relay", "--store", store, "--endpoint", proxy().process.url(),
                                 "--until-empty", "--retry-schedule", "1s", "--report",
                                 dir.file("relayed.jsonl")}),
                    keys());
    INFO(r.err);
    INFO(how_it_ended(r));
    std::map<std::string, int> relayed;  // what the relay reported, by status, if it failed
    for (const auto& line : read_lines(dir.file("relayed.jsonl")))
        ++relayed[std::string(std::string_view(parser.parse(line)["status"]))];
    INFO("relay reported: " << relayed["delivered"] << " delivered, " << relayed["retry"]
                            << " retried, " << relayed["dead"] << " dead");
    CHECK(r.status == 0);
    CHECK(inspect(store).pending == 0);
    std::set<int> arrived;
    for (const auto& body : outbox::test::receive_bodies(queue, stored.size(), 30))
        arrived.insert(static_cast<int>(std::int64_t(parser.parse(body)["event"])));
    CHECK(arrived == stored);
}

namespace {

// Debian's Prometheus server on 127.0.0.1, scraping 127.0.0.1:`scraped` every second.
struct Prometheus {
    TempDir dir;
    std::uint16_t port = outbox::test::free_port();
    std::unique_ptr<outbox::test::PeerProcess> process;
    explicit Prometheus(std::uint16_t scraped) {
        std::ofstream(dir.file("prometheus.yml"))
            << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
            << "  - job_name: outbox\n    static_configs:\n      - targets: ['127.0.0.1:" << scraped
            << "']\n";
        // PeerProcess waits for a {"port": N} line: printed, then Prometheus takes the shell's
        // place (so the PID it stops is Prometheus').
        process = std::make_unique<outbox::test::PeerProcess>(std::vector<std::string>{
            "/bin/sh", "-c",
            "echo '{\"port\": " + std::to_string(port) + "}'; exec prometheus --config.file=" +
                dir.file("prometheus.yml") + " --storage.tsdb.path=" + dir.file("data") +
                " --web.listen-address=127.0.0.1:" + std::to_string(port) + " --log.level=warn 2>" +
                dir.file("prometheus.log")});
    }
    // The value of `query` through Prometheus' HTTP API, or nothing yet.
    std::optional<std::string> value(const std::string& query) const {
        std::string body;
        try {
            body = outbox::test::http_get(port, "/api/v1/query?query=" + query);
        } catch (const std::exception&) {
            return std::nullopt;  // not listening yet
        }
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(body).get(doc) != simdjson::SUCCESS) return std::nullopt;
        simdjson::dom::array result;
        if (doc["data"]["result"].get_array().get(result) != simdjson::SUCCESS ||
            result.size() == 0)
            return std::nullopt;
        return std::string(std::string_view(result.at(0)["value"].at(1)));
    }
};

}  // namespace

TEST_CASE(
    "relay --metrics: Prometheus scrapes the relay and its query API counts the deliveries; "
    "a deleted queue's breaker opens, on the page and in inspect") {
    TempDir dir;
    const std::string store = dir.file("events.db");
    const std::string queue = outbox::test::create_queue("cli-outbox-metrics");
    const std::string deleted = queue.substr(0, queue.rfind('/') + 1) + "cli-outbox-deleted";
    {
        std::ofstream in(dir.file("in.jsonl"));
        for (int i = 0; i < 30; ++i) in << "{\"metered\":" << i << "}\n";
        std::ofstream lost(dir.file("deleted.jsonl"));
        for (int i = 0; i < 5; ++i) lost << "{\"for_a_deleted_queue\":" << i << "}\n";
    }
    REQUIRE(
        run_program(outbox_args({"enqueue", "--store", store, "--to", queue, dir.file("in.jsonl")}),
                    keys())
            .status == 0);
    REQUIRE(run_program(outbox_args({"enqueue", "--store", store, "--to", deleted,
                                     dir.file("deleted.jsonl")}),
                        keys())
                .status == 0);
    const std::uint16_t metrics_port = outbox::test::free_port();
    std::string page, delivered, inspected;
    ProgramOptions options = keys();
    options.while_running = [&](pid_t relay) {
        Prometheus prometheus(metrics_port);
        const auto until = std::chrono::steady_clock::now() + 60s;
        while (std::chrono::steady_clock::now() < until) {
            delivered = prometheus.value("outbox_events_delivered_total").value_or("");
            const auto open =  // outbox_target_health{health="open"}, percent-encoded
                prometheus.value("outbox_target_health%7Bhealth%3D%22open%22%7D").value_or("");
            if (delivered == "30" && open == "1") break;
            std::this_thread::sleep_for(200ms);  // polling Prometheus' answer, not waiting blind
        }
        page = outbox::test::http_get(metrics_port, "/metrics");
        inspected = run_program(outbox_args({"inspect", "--store", store, "--json"}), keys()).out;
        ::kill(relay, SIGTERM);
    };
    // One at a time per target, so exactly two failures open the deleted queue's breaker.
    const ProgramRun r = run_program(
        outbox_args({"relay", "--store", store, "--endpoint", proxy().process.url(), "--metrics",
                     "127.0.0.1:" + std::to_string(metrics_port), "--breaker", "2",
                     "--breaker-open-for", "1h", "--max-in-flight-per-target", "1"}),
        options);
    INFO(r.err);
    INFO(page);
    INFO(inspected);
    CHECK(r.status == 0);
    CHECK(delivered == "30");  // as Prometheus stored it from its scrapes
    CHECK(contains(page, "# TYPE outbox_events_delivered_total counter\n"));
    CHECK(contains(page, "outbox_events_delivered_total 30\n"));
    CHECK(contains(page, "outbox_target_health{target=\"" + deleted + "\",health=\"open\"} 1\n"));
    CHECK(contains(page, "outbox_target_failures{target=\"" + deleted + "\"} 2\n"));
    // inspect, another process, saw the breaker the relay kept in the store.
    simdjson::dom::parser parser;
    bool seen = false;
    for (simdjson::dom::object t : parser.parse(inspected)["targets"].get_array()) {
        if (std::string_view(t["target"]) != deleted) continue;
        seen = true;
        CHECK(std::string_view(t["health"]) == "open");
        CHECK(std::uint64_t(t["consecutive_failures"]) == 2);
        CHECK(std::uint64_t(t["pending"]) + std::uint64_t(t["dead"]) == 5);
        CHECK(std::uint64_t(t["next_probe_in_s"]) > 3500);
    }
    CHECK(seen);
    // The relay stopped: its breakers went with it; the deleted queue's events are still kept.
    const ProgramRun after = run_program(outbox_args({"inspect", "--store", store}), keys());
    CHECK_FALSE(contains(after.out, "open, "));
    CHECK(contains(after.out, deleted));
    REQUIRE(
        run_program(outbox_args({"purge", "--store", store, "--target", deleted}), keys()).status ==
        0);
    CHECK(inspect(store).pending == 0);
    // A bad address is a usage error naming it.
    const ProgramRun bad = run_program(
        outbox_args({"relay", "--store", store, "--metrics", "localhost:9464", "--until-empty"}),
        keys());
    CHECK(bad.status == 2);
    CHECK(contains(bad.err, "not an IP address"));
    // A breaker's wait without a breaker (off by default) would be ignored: a usage error.
    const ProgramRun no_breaker = run_program(
        outbox_args({"relay", "--store", store, "--breaker-open-for", "30s", "--until-empty"}),
        keys());
    CHECK(no_breaker.status == 2);
    CHECK(contains(no_breaker.err, "--breaker-open-for needs --breaker N"));
}
