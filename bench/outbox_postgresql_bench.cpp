// The PostgreSQL store beside its anchors, in one run, on one machine (the database, the
// relays and the fake SQS share its cores). A PostgreSQL server of the bench's own, with the
// default settings (fsync on):
//   1. The application's side: outbox.enqueue in transactions of 1 and of 100 events, beside
//      a plain INSERT of the same rows into a table of the same shape without the outbox's
//      function and indexes (the floor). Client wall time and the database's CPU per event.
//   2. Relays: a backlog delivered by 1, 2 and 4 `outbox relay --until-empty` processes to
//      nginx answering canned SQS replies: events per second, and the relays' CPU per event
//      beside `outbox send`'s for the same events.
//   3. Commit to delivery: an Outbox relaying (woken by NOTIFY) while the application commits
//      one event per transaction at a steady rate: p50, p99, max.
//   4. Claims with a backlog: claim 256 and settle them, with 10,000 and LARGE events pending,
//      ungrouped and in 1,000 groups.
//
// Usage: outbox_postgresql_bench [EVENTS] [LARGE]   (defaults 100000 and 1000000; needs nginx)
#include "bench_support.hpp"
#include "postgres_server.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/outbox.hpp>
#include <outbox/postgresql_store.hpp>
#include <outbox/sqs_destination.hpp>

#include <libpq-fe.h>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using outbox::bench::cpu_seconds;

namespace {

// ---- the database's CPU ------------------------------------------------------------------

double ticks_to_seconds(unsigned long long ticks) {
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// utime + stime (+ cutime + cstime with `children`) of a process, from /proc/PID/stat.
unsigned long long process_ticks(pid_t pid, bool children) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return 0;
    const auto close = line.rfind(')');
    std::vector<std::string> fields;
    std::string field;
    for (std::size_t i = close + 2; i <= line.size(); ++i) {
        if (i == line.size() || line[i] == ' ') {
            fields.push_back(field);
            field.clear();
        } else {
            field.push_back(line[i]);
        }
    }
    // After the name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    auto at = [&](int n) { return std::stoull(fields[static_cast<std::size_t>(n - 3)]); };
    return at(14) + at(15) + (children ? at(16) + at(17) : 0);
}

// The server's CPU so far: the postmaster with the backends it has reaped, and those alive.
double server_cpu_seconds(pid_t postmaster) {
    unsigned long long ticks = process_ticks(postmaster, true);
    if (DIR* d = ::opendir("/proc")) {
        while (dirent* e = ::readdir(d)) {
            const pid_t pid = std::atoi(e->d_name);
            if (pid <= 0) continue;
            std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
            std::string line;
            if (!std::getline(in, line)) continue;
            const auto close = line.rfind(')');
            int ppid = 0;
            char state = 0;
            if (std::sscanf(line.c_str() + close + 2, "%c %d", &state, &ppid) == 2 &&
                ppid == postmaster)
                ticks += process_ticks(pid, false);
        }
        ::closedir(d);
    }
    return ticks_to_seconds(ticks);
}

// ---- libpq --------------------------------------------------------------------------------

PGconn* connect(const std::string& uri) {
    PGconn* c = PQconnectdb(uri.c_str());
    if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
    return c;
}

void run(PGconn* c, const std::string& sql, std::vector<std::string> params = {},
         int binary_param = -1) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (std::size_t i = 0; i < params.size(); ++i) {
        values.push_back(params[i].c_str());
        lengths.push_back(static_cast<int>(params[i].size()));
        formats.push_back(static_cast<int>(i) == binary_param ? 1 : 0);
    }
    PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), lengths.data(), formats.data(), 0);
    const auto status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        const std::string why = PQresultErrorMessage(r);
        PQclear(r);
        throw std::runtime_error(sql + ": " + why);
    }
    PQclear(r);
}

std::string fresh_database(outbox::test::PostgresServer& server, const std::string& name) {
    server.psql("DROP DATABASE IF EXISTS " + name);
    server.psql("CREATE DATABASE " + name);
    return "postgresql://outbox@127.0.0.1:" + std::to_string(server.port()) + "/" + name;
}

// ---- programs -----------------------------------------------------------------------------

struct Run {
    double seconds = 0;
    double cpu = 0;
};

pid_t start_program(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    return pid;
}

// Runs `copies` of the program at once; wall time until the last exits, their CPU summed.
Run programs(const std::vector<std::string>& argv, int copies) {
    const auto start = Clock::now();
    std::vector<pid_t> pids;
    for (int i = 0; i < copies; ++i) pids.push_back(start_program(argv));
    Run r;
    for (pid_t pid : pids) {
        int status = 0;
        rusage usage{};
        ::wait4(pid, &status, 0, &usage);
        r.cpu += cpu_seconds(usage);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            throw std::runtime_error(argv[1] + " exited " + std::to_string(WEXITSTATUS(status)));
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// ---- 1. the application's side --------------------------------------------------------------

void application_side(outbox::test::PostgresServer& server, long events) {
    const std::string uri = fresh_database(server, "bench_enqueue");
    outbox::open_postgresql_store(uri);  // the schema
    PGconn* c = connect(uri);
    run(c,
        "CREATE TABLE plain_events(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, target "
        "text NOT NULL, body bytea NOT NULL, enqueued_at timestamptz NOT NULL DEFAULT now())");
    const std::string body = outbox::bench::body_of_1kib();
    const std::string target = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders";
    std::printf("the application's transactions: events of 1 KiB, default settings (fsync on)\n");
    std::printf("%-58s %10s %16s\n", "", "events/s", "server CPU us/ev");
    for (const long per_transaction : {1L, 100L}) {
        const long n = per_transaction == 1 ? std::min(events / 20, 5000L) : events;
        const std::string count = std::to_string(per_transaction);
        for (const bool plain : {true, false}) {
            const std::string sql =
                plain ? "INSERT INTO plain_events(target, body) SELECT $1, $2 FROM "
                        "generate_series(1, $3::int)"
                      : "SELECT outbox.enqueue_bytes($1, $2) FROM generate_series(1, $3::int)";
            const double cpu_before = server_cpu_seconds(server.pid());
            const auto start = Clock::now();
            for (long done = 0; done < n; done += per_transaction)
                run(c, sql, {target, body, count}, 1);
            const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
            const double cpu = server_cpu_seconds(server.pid()) - cpu_before;
            const std::string name =
                std::string(plain ? "plain INSERT (floor)" : "outbox.enqueue") + ", " + count +
                " per transaction";
            std::printf("%-58s %10.0f %16.1f\n", name.c_str(), static_cast<double>(n) / seconds,
                        cpu * 1e6 / static_cast<double>(n));
        }
    }
    PQfinish(c);
    std::printf("\n");
}

// ---- 2. relays ----------------------------------------------------------------------------

void fill(const std::string& uri, const std::string& target, const std::string& body, long n,
          bool grouped = false) {
    PGconn* c = connect(uri);
    for (long done = 0; done < n; done += 1000)
        run(c,
            grouped ? "SELECT outbox.enqueue_bytes($1, $2, 'g' || (n % 1000)) FROM "
                      "generate_series(1, $3::int) n"
                    : "SELECT outbox.enqueue_bytes($1, $2) FROM generate_series(1, $3::int)",
            {target, body, std::to_string(std::min(1000L, n - done))}, 1);
    PQfinish(c);
}

void relays(outbox::test::PostgresServer& server, long events, const std::string& queue,
            const fs::path& dir) {
    const std::string body = outbox::bench::body_of_1kib();
    const std::string input = (dir / "events.jsonl").string();
    {
        std::ofstream out(input, std::ios::binary);
        for (long i = 0; i < events; ++i) out << body << '\n';
    }
    std::printf(
        "relays: %ld events of 1 KiB committed, then delivered to nginx (canned SQS "
        "replies)\n",
        events);
    std::printf("%-44s %10s %16s %16s\n", "", "events/s", "client us/event", "server us/event");
    const Run send = programs({OUTBOX_CLI_PATH, "send", "--to", queue, input}, 1);
    std::printf("%-44s %10.0f %16.2f %16s\n", "outbox send FILE (no store)",
                static_cast<double>(events) / send.seconds,
                send.cpu * 1e6 / static_cast<double>(events), "-");
    const std::string uri = fresh_database(server, "bench_relay");
    outbox::open_postgresql_store(uri);
    // The last: the reference for the bound per target (on by default), one relay without it.
    const std::vector<std::pair<int, bool>> runs{{1, true}, {2, true}, {4, true}, {1, false}};
    for (const auto& [copies, bounded] : runs) {
        fill(uri, queue, body, events);
        run(connect(uri), "VACUUM ANALYZE outbox.events");
        const double cpu_before = server_cpu_seconds(server.pid());
        std::vector<std::string> argv{OUTBOX_CLI_PATH, "relay", "--store", uri, "--until-empty"};
        if (!bounded) argv.insert(argv.end(), {"--max-in-flight-per-target", "0"});
        const Run r = programs(argv, copies);
        const double server_cpu = server_cpu_seconds(server.pid()) - cpu_before;
        const std::string name = std::to_string(copies) + " x outbox relay --until-empty" +
                                 (bounded ? "" : ", no bound");
        std::printf("%-44s %10.0f %16.2f %16.2f   (client %.2fx send's)\n", name.c_str(),
                    static_cast<double>(events) / r.seconds,
                    r.cpu * 1e6 / static_cast<double>(events),
                    server_cpu * 1e6 / static_cast<double>(events), r.cpu / send.cpu);
    }
    std::printf("\n");
}

// ---- 3. commit to delivery ----------------------------------------------------------------

void latency(outbox::test::PostgresServer& server, const std::string& queue, std::uint16_t port,
             long count, int per_second) {
    const std::string uri = fresh_database(server, "bench_latency");
    boost::asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_postgresql_store(uri);
    config.make_destination = [&io, port](const std::string& target) {
        outbox::SqsDestinationConfig c;
        c.queue_url = target;
        c.endpoint = "http://127.0.0.1:" + std::to_string(port);
        c.region = "us-east-1";
        c.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{"AKIDOUTBOXBENCH", "outbox-bench-secret"});
        c.linger = std::chrono::microseconds(0);
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
    std::map<outbox::EventId, Clock::time_point> settled;
    config.on_settled = [&](const outbox::EventOutcome& o) { settled[o.id] = Clock::now(); };
    outbox::Outbox box(io.get_executor(), std::move(config));

    // Warm: one event through first (the destination made, the connections open).
    {
        PGconn* c = connect(uri);
        run(c, "SELECT outbox.enqueue($1, 'warm-up')", {queue});
        PQfinish(c);
        const auto until = Clock::now() + std::chrono::seconds(30);
        while (settled.empty() && Clock::now() < until)
            io.run_one_for(std::chrono::milliseconds(100));
        settled.clear();
    }
    std::map<outbox::EventId, Clock::time_point> committed;
    std::vector<double> commit_ms;
    std::thread application([&] {
        PGconn* c = connect(uri);
        const std::string body = outbox::bench::body_of_1kib();
        const auto step = std::chrono::microseconds(1000000 / per_second);
        auto next = Clock::now();
        for (long i = 0; i < count; ++i) {
            std::this_thread::sleep_until(next);  // a steady rate, not synchronisation
            next += step;
            const char* values[2] = {queue.c_str(), body.c_str()};
            const auto before = Clock::now();
            PGresult* r = PQexecParams(c, "SELECT outbox.enqueue($1, $2)", 2, nullptr, values,
                                       nullptr, nullptr, 0);
            const auto after = Clock::now();  // the commit is acknowledged
            commit_ms.push_back(std::chrono::duration<double, std::milli>(after - before).count());
            if (PQresultStatus(r) == PGRES_TUPLES_OK)
                committed[std::atoll(PQgetvalue(r, 0, 0))] = after;
            PQclear(r);
        }
        PQfinish(c);
    });
    const auto until = Clock::now() + std::chrono::seconds(120);
    while (static_cast<long>(settled.size()) < count && Clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(100));
    application.join();
    std::vector<double> ms;
    for (const auto& [id, at] : committed)
        if (auto s = settled.find(id); s != settled.end())
            ms.push_back(std::chrono::duration<double, std::milli>(s->second - at).count());
    std::printf(
        "commit to delivered and recorded, %ld events, one per transaction, %d/s, relay "
        "woken by NOTIFY (poll 1 s), after one event to warm up\n",
        count, per_second);
    std::printf(
        "  %zu delivered: from the commit's acknowledgement p50 %.2f ms, p99 %.2f ms, "
        "max %.2f ms\n",
        ms.size(), percentile(ms, 0.50), percentile(ms, 0.99), percentile(ms, 1.0));
    outbox::bench::print_latency("outbox_postgresql_bench", "commit to delivered (PostgreSQL)",
                                 percentile(ms, 0.50), percentile(ms, 0.90), percentile(ms, 0.99),
                                 percentile(ms, 0.999));
    std::printf("  (the application's commit itself: p50 %.2f ms, p99 %.2f ms, max %.2f ms)\n\n",
                percentile(commit_ms, 0.50), percentile(commit_ms, 0.99),
                percentile(commit_ms, 1.0));
}

// ---- 4. claims with a backlog -----------------------------------------------------------

void claims(outbox::test::PostgresServer& server, long large) {
    std::printf(
        "claim 256 and settle them (delivered), 30 times, with a backlog pending "
        "(100-byte events)\n");
    std::printf("%-44s %16s %16s\n", "", "first (ms)", "mean (ms)");
    for (const bool grouped : {false, true}) {
        for (const long pending : {10000L, large}) {
            const std::string uri = fresh_database(server, "bench_claims");
            auto store = outbox::open_postgresql_store(uri);
            PGconn* c = connect(uri);
            run(c,
                grouped ? "INSERT INTO outbox.events(target, group_id, body) SELECT 'q', 'g' || "
                          "(n % 1000), convert_to(repeat('x', 100), 'UTF8') FROM "
                          "generate_series(1, $1::int) n"
                        : "INSERT INTO outbox.events(target, body) SELECT 'q', "
                          "convert_to(repeat('x', 100), 'UTF8') FROM generate_series(1, $1::int)",
                {std::to_string(pending)});
            run(c, "VACUUM ANALYZE outbox.events");
            PQfinish(c);
            std::vector<double> ms;
            for (int i = 0; i < 30; ++i) {
                const auto start = Clock::now();
                auto events = store->claim(std::chrono::system_clock::now(), 256);
                std::vector<outbox::EventOutcome> done;
                for (const auto& e : events) {
                    outbox::EventOutcome o;
                    o.id = e.id;
                    done.push_back(o);
                }
                store->settle(done);
                ms.push_back(
                    std::chrono::duration<double, std::milli>(Clock::now() - start).count());
                if (events.size() != 256) throw std::runtime_error("a claim came back short");
            }
            double mean = 0;
            for (double m : ms) mean += m;
            mean /= static_cast<double>(ms.size());
            const std::string name =
                std::to_string(pending) + " pending" + (grouped ? ", in 1000 groups" : "");
            std::printf("%-44s %16.2f %16.2f\n", name.c_str(), ms.front(), mean);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const long events = argc > 1 ? std::atol(argv[1]) : 100000;
    const long large = argc > 2 ? std::atol(argv[2]) : 1000000;
    ::setenv("AWS_ACCESS_KEY_ID", "AKIDOUTBOXBENCH", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "outbox-bench-secret", 1);
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ::setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    ::unsetenv("AWS_SESSION_TOKEN");
    const fs::path dir =
        fs::temp_directory_path() / ("outbox-pg-bench-" + std::to_string(::getpid()));
    fs::create_directories(dir);

    outbox::test::PostgresServer server(true);
    const std::string body = outbox::bench::body_of_1kib();
    outbox::bench::Nginx nginx(
        "default_type application/x-amz-json-1.0; "
        "if ($http_x_amz_target = \"AmazonSQS.SendMessage\") { return 200 '" +
        outbox::bench::canned_single_reply(body) + "'; } return 200 '" +
        outbox::bench::canned_batch_reply(body) + "';");
    const std::string queue =
        "http://127.0.0.1:" + std::to_string(nginx.port()) + "/000000000000/bench";

    application_side(server, events);
    relays(server, events, queue, dir);
    latency(server, queue, nginx.port(), std::min(events / 20, 5000L), 500);
    claims(server, large);
    fs::remove_all(dir);
    return 0;
}
