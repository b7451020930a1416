// The durable outbox beside its floors, in one run:
//   1. Durable enqueue of 1 KiB events: a plain SQLite program inserting the same rows in
//      transactions of 1000 with the same durability (WAL, synchronous = FULL) — the floor,
//      with SQLite's default pages and, for reference, with the store's 16 KiB ones —
//      beside Outbox::async_enqueue with 4096 enqueues outstanding, and beside the `outbox
//      enqueue` program reading the events from a file.
//   2. Relay: client CPU per delivered event of `outbox relay --until-empty` beside `outbox send`
//      for the same events to the same server (nginx answering a canned SendMessageBatch
//      reply), and the relay's peak memory for a backlog and for one ten times larger.
//
// Usage: outbox_bench [EVENTS] [ROUNDS]   (defaults 100000 and 3; needs nginx)
#include "bench_support.hpp"

#include <outbox/outbox.hpp>
#include <outbox/sqlite_store.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using outbox::bench::body_of_1kib;
using outbox::bench::canned_batch_reply;
using outbox::bench::cpu_seconds;

namespace {

void remove_store(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
}

struct Run {
    double seconds = 0;
    double cpu = 0;
    long max_rss_kib = 0;
};

// The floor: plain SQLite, the same rows, the same durability, transactions of 1000; with
// SQLite's default page size (4 KiB), or with the store's (16 KiB) for reference.
Run plain_sqlite(const std::string& path, long events, const std::string& body, int page_size = 0) {
    remove_store(path);
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("sqlite3_open");
    if (page_size != 0)
        sqlite3_exec(db, ("PRAGMA page_size = " + std::to_string(page_size)).c_str(), nullptr,
                     nullptr, nullptr);
    sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;", nullptr, nullptr,
                 nullptr);
    sqlite3_exec(db,
                 "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, "
                 "body BLOB NOT NULL, enqueued_at INTEGER NOT NULL)",
                 nullptr, nullptr, nullptr);
    sqlite3_stmt* insert = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO events(target, body, enqueued_at) VALUES (?1, ?2, ?3)", -1,
                       &insert, nullptr);
    const std::string target = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders";
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    const auto start = Clock::now();
    for (long done = 0; done < events;) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        for (int i = 0; i < 1000 && done < events; ++i, ++done) {
            sqlite3_bind_text(insert, 1, target.data(), static_cast<int>(target.size()),
                              SQLITE_STATIC);
            sqlite3_bind_blob(insert, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
            sqlite3_bind_int64(insert, 3, done);
            sqlite3_step(insert);
            sqlite3_reset(insert);
        }
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
    Run r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    getrusage(RUSAGE_SELF, &after);
    r.cpu = cpu_seconds(after) - cpu_seconds(before);
    sqlite3_finalize(insert);
    sqlite3_close(db);
    return r;
}

// Outbox::async_enqueue from a program: 4096 enqueues outstanding at once.
Run outbox_library(const std::string& path, long events, const std::string& body) {
    remove_store(path);
    boost::asio::io_context io(1);
    outbox::OutboxConfig config;
    config.store = outbox::open_sqlite_store(path);
    config.relay = false;
    outbox::Outbox box(io.get_executor(), std::move(config));
    const std::string target = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders";
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    const auto start = Clock::now();
    long started = 0, done = 0;
    std::function<void()> launch = [&] {
        ++started;
        outbox::Message m;
        m.body = body;
        box.async_enqueue(target, std::move(m),
                          [&](boost::system::error_code ec, outbox::EnqueueResult) {
                              if (ec) throw std::runtime_error("enqueue failed: " + ec.message());
                              ++done;
                              if (started < events) launch();
                          });
    };
    while (started < std::min<long>(4096, events)) launch();
    io.run();
    Run r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    getrusage(RUSAGE_SELF, &after);
    r.cpu = cpu_seconds(after) - cpu_seconds(before);
    if (done != events) throw std::runtime_error("not every event was stored");
    return r;
}

// A program run to its end: wall time, its CPU, its peak memory. OUTBOX_BENCH_PROFILE_RELAY=FILE
// runs the relay under `perf record -g -o FILE` (the figures then include perf's own cost).
Run program(std::vector<std::string> argv) {
    if (const char* perf = std::getenv("OUTBOX_BENCH_PROFILE_RELAY"); perf && argv[1] == "relay")
        argv.insert(argv.begin(), {"/usr/bin/perf", "record", "-g", "-o", perf, "--"});
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const auto start = Clock::now();
    const pid_t pid = fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    rusage usage{};
    ::wait4(pid, &status, 0, &usage);
    Run r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.cpu = cpu_seconds(usage);
    r.max_rss_kib = usage.ru_maxrss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error(argv.back() + " exited " + std::to_string(WEXITSTATUS(status)));
    return r;
}

void write_lines(const std::string& path, long events, const std::string& body) {
    std::ofstream out(path, std::ios::binary);
    for (long i = 0; i < events; ++i) out << body << '\n';
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines as they come, into a pipe too
    const long events = argc > 1 ? std::atol(argv[1]) : 100000;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    ::setenv("AWS_ACCESS_KEY_ID", "AKIDOUTBOXBENCH", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "outbox-bench-secret", 1);
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ::setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    ::unsetenv("AWS_SESSION_TOKEN");
    const fs::path dir = fs::temp_directory_path() / ("outbox-bench-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string store = (dir / "events.db").string(), input = (dir / "events.jsonl").string();
    const std::string body = body_of_1kib();
    write_lines(input, events, body);

    std::printf("durable enqueue of %ld events of 1 KiB (WAL, synchronous = FULL), %d rounds\n",
                events, rounds);
    std::printf("%-44s %12s %12s %14s\n", "", "events/s", "time (s)", "CPU us/event");
    double floor_best = 1e9, floor16_best = 1e9, library_best = 1e9, cli_best = 1e9;
    for (int round = 0; round < rounds; ++round) {
        const Run floor = plain_sqlite(store, events, body);
        const Run floor16 = plain_sqlite(store, events, body, 16384);
        const Run library = outbox_library(store, events, body);
        remove_store(store);
        const Run cli = program({OUTBOX_CLI_PATH, "enqueue", "--store", store, "--to",
                                 "https://sqs.eu-west-1.amazonaws.com/123456789012/orders", input});
        for (const auto& [name, r] :
             {std::pair{"plain SQLite, transactions of 1000 (floor)", floor},
              std::pair{"  the same with 16 KiB pages (the store's)", floor16},
              std::pair{"Outbox::async_enqueue, 4096 outstanding", library},
              std::pair{"outbox enqueue FILE (the program)", cli}})
            std::printf("%-44s %12.0f %12.2f %14.2f\n", name, events / r.seconds, r.seconds,
                        r.cpu * 1e6 / static_cast<double>(events));
        floor_best = std::min(floor_best, floor.seconds);
        floor16_best = std::min(floor16_best, floor16.seconds);
        library_best = std::min(library_best, library.seconds);
        cli_best = std::min(cli_best, cli.seconds);
    }
    std::printf(
        "best of each: library %.2fx the floor's time, program %.2fx (beside the floor "
        "with 16 KiB pages: %.2fx, %.2fx)\n\n",
        library_best / floor_best, cli_best / floor_best, library_best / floor16_best,
        cli_best / floor16_best);

    // The relay beside `outbox send`, to nginx answering every request with the batch reply.
    const std::string single = outbox::bench::canned_single_reply(body);
    outbox::bench::Nginx nginx(
        "default_type application/x-amz-json-1.0; "
        "if ($http_x_amz_target = \"AmazonSQS.SendMessage\") { return 200 '" +
        single +
        "'; } "
        "return 200 '" +
        canned_batch_reply(body) + "';");
    const std::string queue =
        "http://127.0.0.1:" + std::to_string(nginx.port()) + "/000000000000/bench";
    std::printf("relay beside send: %ld events of 1 KiB to nginx (canned SendMessageBatch reply)\n",
                events);
    std::printf("%-44s %12s %14s %14s\n", "", "events/s", "CPU us/event", "peak RSS KiB");
    double send_cpu = 0, relay_cpu = 0, unbounded_cpu = 0;
    std::vector<double> sends, relays, unboundeds;  // CPU per round, for medians
    long relay_rss = 0;
    for (int round = 0; round < rounds; ++round) {
        const Run send = program({OUTBOX_CLI_PATH, "send", "--to", queue, input});
        remove_store(store);
        program({OUTBOX_CLI_PATH, "enqueue", "--store", store, "--to", queue, input});
        const Run relay = program({OUTBOX_CLI_PATH, "relay", "--store", store, "--until-empty"});
        // The reference for the bound per target (on by default): the same without it.
        remove_store(store);
        program({OUTBOX_CLI_PATH, "enqueue", "--store", store, "--to", queue, input});
        const Run unbounded = program({OUTBOX_CLI_PATH, "relay", "--store", store, "--until-empty",
                                       "--max-in-flight-per-target", "0"});
        std::printf("%-44s %12.0f %14.2f %14ld\n", "outbox send FILE", events / send.seconds,
                    send.cpu * 1e6 / static_cast<double>(events), send.max_rss_kib);
        std::printf("%-44s %12.0f %14.2f %14ld\n",
                    "outbox relay --until-empty (store filled first)", events / relay.seconds,
                    relay.cpu * 1e6 / static_cast<double>(events), relay.max_rss_kib);
        std::printf("%-44s %12.0f %14.2f %14ld\n", "  the same, --max-in-flight-per-target 0",
                    events / unbounded.seconds, unbounded.cpu * 1e6 / static_cast<double>(events),
                    unbounded.max_rss_kib);
        send_cpu += send.cpu;
        relay_cpu += relay.cpu;
        unbounded_cpu += unbounded.cpu;
        sends.push_back(send.cpu);
        relays.push_back(relay.cpu);
        unboundeds.push_back(unbounded.cpu);
        relay_rss = std::max(relay_rss, relay.max_rss_kib);
    }
    // This machine's CPU time moves by a fifth from round to round: medians beside sums.
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        const std::size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    };
    std::printf(
        "relay CPU per event: %.2fx send's (sums over the rounds), %.2fx (medians); without "
        "the bound per target %.2fx, %.2fx\n\n",
        relay_cpu / send_cpu, median(relays) / median(sends), unbounded_cpu / send_cpu,
        median(unboundeds) / median(sends));
    outbox::bench::print_figure("outbox_bench", "outbox relay / outbox send",
                                median(relays) * 1e6 / double(events),
                                median(sends) * 1e6 / double(events), "us CPU/event", 0);

    // Memory whatever the backlog: ten times the events, the relay's peak again.
    const std::string big = (dir / "big.jsonl").string();
    write_lines(big, events * 10, body);
    remove_store(store);
    program({OUTBOX_CLI_PATH, "enqueue", "--store", store, "--to", queue, big});
    const Run relay_big = program({OUTBOX_CLI_PATH, "relay", "--store", store, "--until-empty"});
    std::printf("relay peak memory: %ld KiB for %ld events, %ld KiB for %ld (%.2fx)\n", relay_rss,
                events, relay_big.max_rss_kib, events * 10,
                static_cast<double>(relay_big.max_rss_kib) / static_cast<double>(relay_rss));

    // A backlog in one group (a FIFO queue, one MessageGroupId): one event in flight at a time,
    // so each is a claim, a send and a settlement. The cost per event must not grow with the
    // backlog behind the group's head.
    const std::string fifo = queue + ".fifo";
    std::printf("\nrelay of a backlog in one group (one event in flight at a time)\n");
    std::printf("%-44s %12s %14s\n", "", "events/s", "CPU us/event");
    double grouped_cpu[2] = {0, 0};
    const long grouped_sizes[2] = {std::max(1L, events / 50), std::max(1L, events / 50) * 4};
    for (int i = 0; i < 2; ++i) {
        const long n = grouped_sizes[i];
        const std::string grouped = (dir / "grouped.jsonl").string();
        {
            std::string escaped;
            for (char c : body) {
                if (c == '"' || c == '\\') escaped += '\\';
                escaped += c;
            }
            std::ofstream out(grouped, std::ios::binary);
            for (long k = 0; k < n; ++k)
                out << "{\"body\":\"" << escaped << "\",\"group_id\":\"g\",\"dedup_id\":\"d" << k
                    << "\"}\n";
        }
        remove_store(store);
        program({OUTBOX_CLI_PATH, "enqueue", "--store", store, "--to", fifo, "--objects", grouped});
        const Run relay = program({OUTBOX_CLI_PATH, "relay", "--store", store, "--until-empty"});
        grouped_cpu[i] = relay.cpu / static_cast<double>(n);
        std::printf("%-44s %12.0f %14.2f\n",
                    ("one group, " + std::to_string(n) + " events").c_str(), n / relay.seconds,
                    grouped_cpu[i] * 1e6);
    }
    std::printf("CPU per event with 4x the backlog: %.2fx\n", grouped_cpu[1] / grouped_cpu[0]);
    fs::remove_all(dir);
    return 0;
}
