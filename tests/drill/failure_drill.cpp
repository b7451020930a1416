// The failure drill: N messages through SqsDestination (behind a proxy that injects 5xx,
// throttling, resets, lost and slow replies, partial batch failures and outages) and through
// KafkaDestination (a mock cluster with produce errors, brokers going down, replies held past
// the request timeout and leaders moving), while the faults run on a schedule.
//
// Afterwards it checks, and prints:
//   - every message completed exactly once, and the destination's counters agree;
//   - every failed message reached the dead-letter handler once, and only those;
//   - every delivered message is at the peer (read back by the AWS SDK for JavaScript and
//     kcat); a message that failed with a definite refusal is not;
//   - the heap in use is back to its baseline, once idle and once the destination is gone.
// Exit status 0 when all hold, 1 otherwise. `scripts/dev test` runs it with 1000 messages
// (ctest: failure_drill_short), `scripts/dev drill` with 10000.
//
//   failure_drill [--messages N] [--seconds S] [--only sqs|kafka] [--seed S]
// The sends are spread over S seconds (default: 8 ms per message), so faults land all
// through the run.
#include "kafka_mock.hpp"
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/kafka_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <simdjson.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

struct Memory {
    std::size_t heap_in_use = 0;  // bytes malloc has handed out and not had back
    std::size_t resident = 0;

    static Memory now() {
        malloc_trim(0);
        const struct mallinfo2 info = mallinfo2();
        Memory m;
        m.heap_in_use = info.uordblks + info.hblkhd;
        std::ifstream statm("/proc/self/statm");
        std::size_t pages = 0, resident_pages = 0;
        statm >> pages >> resident_pages;
        m.resident = resident_pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        return m;
    }
};

double mib(std::size_t bytes) {
    return double(bytes) / (1024.0 * 1024.0);
}
double signed_kib(std::size_t after, std::size_t before) {
    return (double(after) - double(before)) / 1024.0;
}

// What happened to each message, kept in memory allocated before the baseline is taken.
struct Ledger {
    explicit Ledger(std::size_t n)
        : completions(n), errors(n), dead_letters(n), partitions(n), offsets(n) {}
    std::vector<int> completions;
    std::vector<error_code> errors;
    std::vector<std::atomic<int>> dead_letters;
    std::vector<std::int32_t> partitions;
    std::vector<std::int64_t> offsets;
};

struct Verdict {
    std::string name;
    std::vector<std::string> problems;
    void check(bool ok, const std::string& what) {
        if (!ok) problems.push_back(what);
    }
};

std::string body_for(const std::string& run, std::size_t i, std::mt19937& rng, bool refused) {
    std::string body = run + "-" + std::to_string(i) + "-";
    // Characters above U+FFFF: fauxqs refuses them as a sender fault, a definite failure.
    if (refused) body += "\xf0\x9f\x98\x80";
    body.append(std::uniform_int_distribution<std::size_t>(20, 1500)(rng), 'x');
    return body;
}

std::size_t index_of(const std::string& body, const std::string& run) {
    return std::stoul(body.substr(run.size() + 1));
}

// Sends every message, paced evenly over `spread` so the faults land all through the run,
// runs `io` (with the fault schedule on it) until all completed, then closes.
void drive(asio::io_context& io, outbox::Destination& d, const std::vector<std::string>& bodies,
           Ledger& ledger, Verdict& v, std::chrono::milliseconds spread) {
    std::size_t done = 0, next = 0;
    constexpr auto slice = std::chrono::milliseconds(10);
    const std::size_t per_slice =
        std::max<std::size_t>(1, bodies.size() * slice.count() / std::max<long>(1, spread.count()));
    asio::steady_timer pacer(io);
    std::function<void()> send_slice = [&] {
        for (std::size_t k = 0; k < per_slice && next < bodies.size(); ++k, ++next) {
            outbox::Message m;
            m.body = bodies[next];
            d.async_send(std::move(m), [&, i = next](error_code ec, outbox::Receipt r) {
                ++ledger.completions[i];
                ledger.errors[i] = ec;
                ledger.partitions[i] = r.partition;
                ledger.offsets[i] = r.offset;
                ++done;
            });
        }
        if (next == bodies.size()) return;
        pacer.expires_after(slice);
        pacer.async_wait([&](error_code ec) {
            if (!ec) send_slice();
        });
    };
    send_slice();
    io.restart();
    while (done < bodies.size() && io.run_one_for(std::chrono::seconds(120)) != 0) {
    }
    v.check(done == bodies.size(), std::to_string(bodies.size() - done) + " sends never completed");
    bool closed = false;
    d.async_close(std::chrono::seconds(30), [&](error_code) { closed = true; });
    while (!closed && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    v.check(closed, "close never completed");
}

struct Tally {
    std::size_t delivered = 0, failed = 0, not_once = 0, letters_wrong = 0;
    std::map<std::string, std::size_t> failures_by_error;
};

Tally tally(const Ledger& ledger) {
    Tally t;
    for (std::size_t i = 0; i < ledger.completions.size(); ++i) {
        if (ledger.completions[i] != 1) ++t.not_once;
        const bool failed = bool(ledger.errors[i]);
        (failed ? t.failed : t.delivered) += 1;
        if (failed) ++t.failures_by_error[ledger.errors[i].message()];
        if (ledger.dead_letters[i].load() != (failed ? 1 : 0)) ++t.letters_wrong;
    }
    return t;
}

// The destination's counters, which also saw the one warm-up message, against the receipts.
void check_accounting(const outbox::DestinationStats& stats, Verdict& v, std::size_t count,
                      const Tally& t) {
    v.check(t.not_once == 0,
            std::to_string(t.not_once) + " messages did not complete exactly once");
    v.check(t.letters_wrong == 0,
            std::to_string(t.letters_wrong) + " messages with a wrong number of dead letters");
    v.check(stats.accepted == count + 1, "accepted " + std::to_string(stats.accepted));
    v.check(stats.delivered == t.delivered + 1,
            "the delivered counter disagrees with the receipts");
    v.check(stats.failed == t.failed, "the failed counter disagrees with the receipts");
    v.check(stats.in_flight == 0, "in flight " + std::to_string(stats.in_flight) + " after close");
}

// Sends one message and waits for it: connections, metadata, handler memory warmed up.
void warm_up(asio::io_context& io, outbox::Destination& d, const std::string& body) {
    outbox::Message m;
    m.body = body;
    bool done = false;
    d.async_send(std::move(m), [&](error_code, outbox::Receipt) { done = true; });
    io.restart();
    while (!done && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
}

// The heap may keep a little for structures sized by the peak load (hash tables, Asio's
// timer heap, librdkafka's buffers), never by the number of messages.
constexpr std::size_t heap_slack = 512 * 1024;
// Under a sanitizer malloc is the sanitizer's: mallinfo2 does not see it.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool heap_measured = false;
#else
constexpr bool heap_measured = true;
#endif

// The heap at the four moments the drill compares.
struct HeapReadings {
    Memory before;  // no destination yet (a first one has come and gone)
    Memory base;    // the destination warmed up, idle
    Memory idle;    // after the drill, idle again
    Memory gone;    // the destination destroyed

    void check(Verdict& v) const {
        v.check(!heap_measured || idle.heap_in_use <= base.heap_in_use + heap_slack,
                "the heap did not return to its baseline while idle");
        v.check(!heap_measured || gone.heap_in_use <= before.heap_in_use + heap_slack,
                "the heap did not return to its baseline once destroyed");
    }
};

void print_report(const Verdict& v, const Tally& t, const outbox::DestinationStats& stats,
                  const std::string& at_peer, const HeapReadings& heap, double seconds,
                  const std::string& faults) {
    const auto& [before, base, idle, gone] = heap;
    std::printf("== %s: %zu delivered, %zu failed in %.1f s\n", v.name.c_str(), t.delivered,
                t.failed, seconds);
    for (auto& [error, n] : t.failures_by_error)
        std::printf("   failed with \"%s\": %zu\n", error.c_str(), n);
    std::string described = outbox::describe(stats);
    for (std::size_t at = 0;
         (at = described.find('\n', at)) != std::string::npos && at + 1 < described.size(); at += 4)
        described.insert(at + 1, "   ");
    std::printf("   %s", described.c_str());
    std::printf("   faults: %s\n", faults.c_str());
    std::printf("   at the peer: %s\n", at_peer.c_str());
    std::printf(
        "   heap in use: %.2f MiB with the destination idle before, %.2f MiB idle after (%+.0f "
        "KiB);"
        " %.2f MiB before it existed, %.2f MiB once destroyed (%+.0f KiB)\n",
        mib(base.heap_in_use), mib(idle.heap_in_use),
        signed_kib(idle.heap_in_use, base.heap_in_use), mib(before.heap_in_use),
        mib(gone.heap_in_use), signed_kib(gone.heap_in_use, before.heap_in_use));
    std::printf("   resident: %.1f MiB idle before, %.1f MiB idle after\n", mib(base.resident),
                mib(idle.resident));
    if (!heap_measured) std::printf("   (heap not checked: a sanitizer's allocator is in use)\n");
    if (v.problems.empty()) {
        std::printf("   OK: every message accounted for exactly once\n");
    } else {
        for (auto& p : v.problems) std::printf("   PROBLEM: %s\n", p.c_str());
    }
}

// ---- SQS ---------------------------------------------------------------------------------

bool drill_sqs(std::size_t count, unsigned seed, std::chrono::milliseconds spread) {
    Verdict v{"SQS (fauxqs behind the fault-injecting proxy)", {}};
    const std::string run = "sqs-drill-" + std::to_string(::getpid());
    const std::string queue = outbox::test::create_queue(run);
    const std::string faults =
        "500=0.03,503=0.03,throttle=0.03,reset=0.03,lost=0.03,slow=0.03,partial=0.05";
    const outbox::test::SigV4Proxy proxy(
        outbox::test::fauxqs().port(), "sqs", "AKIDDRILL", "drill-secret",
        {"--faults", faults, "--seed", std::to_string(seed), "--slow-ms", "200"});
    std::mt19937 rng(seed);
    std::vector<std::string> bodies;
    for (std::size_t i = 0; i < count; ++i) bodies.push_back(body_for(run, i, rng, i % 500 == 250));
    Ledger ledger(count);

    asio::io_context io;
    auto config = outbox::SqsDestinationConfig{};
    config.queue_url = queue;
    config.endpoint = proxy.process.url();
    config.region = "us-east-1";
    config.credentials = outbox::make_static_credentials(
        io.get_executor(), outbox::Credentials{"AKIDDRILL", "drill-secret"});
    config.retry.base_delay = std::chrono::milliseconds(20);
    config.retry.max_delay = std::chrono::seconds(1);
    config.retry.max_attempts = 60;
    config.max_in_flight_messages = 1000;  // the drill sends more: most wait for room
    // A first destination warms up what lives as long as the process (Asio's recycled
    // handler memory, resolver and OpenSSL tables); the baselines are taken after it.
    {
        outbox::SqsDestination first(io.get_executor(), config);
        warm_up(io, first, run + "-warm-up-first");
    }
    io.restart();
    io.run_for(std::chrono::seconds(2));
    HeapReadings heap;
    heap.before = Memory::now();
    auto sqs = std::make_unique<outbox::SqsDestination>(io.get_executor(), config);
    warm_up(io, *sqs, run + "-warm-up");
    heap.base = Memory::now();
    sqs->set_dead_letter_handler([&](outbox::DeadLetter&& letter) {
        ++ledger.dead_letters[index_of(letter.message.body, run)];
    });

    // Outages: every 2 s, requests are dropped unanswered for 0.6 s.
    asio::steady_timer outages(io);
    std::size_t outages_started = 0;
    std::function<void()> schedule = [&] {
        outages.expires_after(std::chrono::seconds(2));
        outages.async_wait([&](error_code ec) {
            if (ec) return;
            proxy.outage(0.6);
            ++outages_started;
            schedule();
        });
    };
    schedule();
    const auto start = Clock::now();
    drive(io, *sqs, bodies, ledger, v, spread);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    outages.cancel();
    io.restart();
    io.poll();
    const auto stats = sqs->stats();
    heap.idle = Memory::now();
    sqs.reset();
    io.restart();
    io.run_for(std::chrono::seconds(5));
    heap.gone = Memory::now();

    const Tally t = tally(ledger);
    check_accounting(stats, v, count, t);

    // At the peer: every delivered body; a refused one (sender fault) never.
    // Read until the queue is empty: first as many as were delivered, then what is left
    // (duplicates) until a few seconds pass with nothing.
    simdjson::dom::parser parser;
    std::map<std::size_t, int> seen;
    for (std::size_t want = t.delivered + 1, seconds_left = 60;; want = 1000, seconds_left = 3) {
        const std::string json =
            outbox::test::receive_json(queue, want, static_cast<int>(seconds_left));
        std::size_t got = 0;
        for (simdjson::dom::element m : parser.parse(json).get_array()) {
            ++got;
            const std::string body{std::string_view(m["body"])};
            if (body.starts_with(run + "-warm")) continue;
            ++seen[index_of(body, run)];
        }
        if (got == 0) break;
    }
    std::size_t missing = 0, refused_present = 0, duplicates = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const auto it = seen.find(i);
        if (!ledger.errors[i] && it == seen.end()) ++missing;
        if (ledger.errors[i] == outbox::Errc::service_error && it != seen.end()) ++refused_present;
        if (it != seen.end() && it->second > 1)
            duplicates += static_cast<std::size_t>(it->second - 1);
    }
    v.check(missing == 0, std::to_string(missing) + " delivered messages are not in the queue");
    v.check(refused_present == 0,
            std::to_string(refused_present) + " refused messages are in the queue");
    std::size_t planted = 0;
    for (std::size_t i = 0; i < count; ++i)
        planted += ledger.errors[i] == outbox::Errc::service_error ? 1 : 0;
    v.check(t.failed == planted, "failures other than the planted refusals");
    heap.check(v);

    const std::string proxy_json = proxy.stats_json();
    simdjson::dom::element proxy_stats = parser.parse(proxy_json);
    std::string injected;
    for (auto [kind, n] : simdjson::dom::object(proxy_stats["faults"]))
        injected += std::string(kind) + " " + std::to_string(std::uint64_t(n)) + ", ";
    injected += "outages " + std::to_string(outages_started) + " (" +
                std::to_string(std::uint64_t(proxy_stats["outage_drops"])) +
                " requests dropped), signature failures " +
                std::to_string(std::uint64_t(proxy_stats["signature_failures"]));
    v.check(std::uint64_t(proxy_stats["signature_failures"]) == 0, "the proxy saw bad signatures");
    const std::string at_peer =
        std::to_string(seen.size()) + " distinct messages, " + std::to_string(duplicates) +
        " duplicates (at least once: replies lost after the queue stored them)";
    print_report(v, t, stats, at_peer, heap, seconds, injected);
    return v.problems.empty();
}

// ---- Kafka -------------------------------------------------------------------------------

bool drill_kafka(std::size_t count, unsigned seed, std::chrono::milliseconds spread,
                 const std::string& broker_path) {
    Verdict v{"Kafka (the mock cluster, faults on a schedule)", {}};
    const std::string run = "kafka-drill-" + std::to_string(::getpid());
    const std::string topic = run;
    outbox::test::PeerProcess cluster(
        {broker_path, "--brokers", "3", "--topic", topic + ":6", "--commands"}, true);
    simdjson::dom::parser parser;
    const std::string bootstrap{std::string_view(parser.parse(cluster.ready_line())["bootstrap"])};
    std::mt19937 rng(seed);
    std::vector<std::string> bodies;
    for (std::size_t i = 0; i < count; ++i) bodies.push_back(body_for(run, i, rng, false));
    Ledger ledger(count);

    asio::io_context io;
    outbox::KafkaDestinationConfig config;
    config.bootstrap_servers = bootstrap;
    config.topic = topic;
    config.security = outbox::KafkaSecurity::plaintext;
    config.retry.message_deadline = std::chrono::seconds(120);
    config.retry.max_attempts = 1000;
    config.max_in_flight_messages = 2000;
    config.properties = {
        // A reply held back longer than this is lost: the request is sent again.
        {"request.timeout.ms", "1500"},
        // The mock does not check idempotent sequence numbers; with one request in flight
        // librdkafka never acks a batch implicitly (see kafka_destination_test.cpp).
        {"max.in.flight.requests.per.connection", "1"},
    };
    {
        outbox::KafkaDestination first(io.get_executor(), config);
        warm_up(io, first, run + "-warm-up-first");
    }
    HeapReadings heap;
    heap.before = Memory::now();
    auto kafka = std::make_unique<outbox::KafkaDestination>(io.get_executor(), config);
    warm_up(io, *kafka, run + "-warm-up");
    heap.base = Memory::now();
    kafka->set_dead_letter_handler([&](outbox::DeadLetter&& letter) {
        ++ledger.dead_letters[index_of(letter.message.body, run)];
    });

    // Every 400 ms the next fault: retriable produce errors; a broker down, then up; replies
    // held past the request timeout (lost), then not; a leader moved; once, a permanent error.
    asio::steady_timer ticker(io);
    std::map<std::string, int> injected;
    std::size_t tick = 0;
    int down_broker = 0, slow_broker = 0;
    std::mt19937 faults_rng(seed);
    auto command = [&](const std::string& line, const std::string& kind) {
        if (cluster.command(line) == "ok") ++injected[kind];
    };
    std::function<void()> schedule = [&] {
        ticker.expires_after(std::chrono::milliseconds(400));
        ticker.async_wait([&](error_code ec) {
            if (ec) return;
            const int broker = std::uniform_int_distribution<int>(1, 3)(faults_rng);
            switch (tick++ % 8) {
                case 0:
                    command("errors 6,19,7,5", "retriable produce errors (4 each)");
                    break;
                case 1:
                    if (!down_broker) {
                        down_broker = broker;
                        command("down " + std::to_string(broker), "broker outages");
                    }
                    break;
                case 3:
                    if (down_broker) {
                        command("up " + std::to_string(down_broker), "broker recoveries");
                        down_broker = 0;
                    }
                    break;
                case 4:
                    slow_broker = broker;
                    command("rtt " + std::to_string(broker) + " 2500",
                            "replies held past the timeout");
                    break;
                case 5:
                    command("rtt " + std::to_string(slow_broker) + " 0", "replies back to normal");
                    break;
                case 6:
                    command("leader " + topic + " " + std::to_string(broker % 6) + " " +
                                std::to_string(broker),
                            "leader moves");
                    break;
                case 7:
                    if (tick == 8)
                        command("errors 87", "permanent produce errors (INVALID_RECORD)");
                    break;
                default:
                    break;
            }
            schedule();
        });
    };
    schedule();
    const auto start = Clock::now();
    drive(io, *kafka, bodies, ledger, v, spread);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    ticker.cancel();
    io.restart();
    io.poll();
    // Leave the cluster whole, so that everything in it can be read back.
    if (down_broker) cluster.command("up " + std::to_string(down_broker));
    if (slow_broker) cluster.command("rtt " + std::to_string(slow_broker) + " 0");
    const auto stats = kafka->stats();
    heap.idle = Memory::now();
    kafka.reset();
    heap.gone = Memory::now();

    const Tally t = tally(ledger);
    check_accounting(stats, v, count, t);
    std::map<std::size_t, std::set<std::pair<int, long long>>> seen;
    for (const auto& r : outbox::test::kcat_read(bootstrap, topic)) {
        if (r.payload.starts_with(run + "-warm")) continue;
        seen[index_of(r.payload, run)].insert({r.partition, r.offset});
    }
    std::size_t missing = 0, misplaced = 0, refused_present = 0, duplicates = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const auto it = seen.find(i);
        if (!ledger.errors[i]) {
            if (it == seen.end())
                ++missing;
            else if (!it->second.count({ledger.partitions[i], ledger.offsets[i]}))
                ++misplaced;
        }
        if (ledger.errors[i] == outbox::Errc::service_error && it != seen.end()) ++refused_present;
        if (it != seen.end()) duplicates += it->second.size() - 1;
    }
    v.check(missing == 0, std::to_string(missing) + " delivered messages are not in the topic");
    v.check(misplaced == 0,
            std::to_string(misplaced) +
                " delivered messages are not at their receipt's partition and offset");
    v.check(refused_present == 0,
            std::to_string(refused_present) + " refused messages are in the topic");
    heap.check(v);
    std::string faults;
    for (auto& [kind, n] : injected) faults += kind + " " + std::to_string(n) + ", ";
    if (!faults.empty()) faults.resize(faults.size() - 2);
    const std::string at_peer =
        std::to_string(seen.size()) + " distinct messages, " + std::to_string(duplicates) +
        " duplicates (at least once: replies held past the timeout, then sent again)";
    print_report(v, t, stats, at_peer, heap, seconds, faults);
    return v.problems.empty();
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t count = 1000;
    long seconds = 0;  // how long the sends are spread over; 0: one second per 125 messages
    std::string only;
    unsigned seed = 7;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--messages" && i + 1 < argc)
            count = std::stoul(argv[++i]);
        else if (a == "--only" && i + 1 < argc)
            only = argv[++i];
        else if (a == "--seed" && i + 1 < argc)
            seed = static_cast<unsigned>(std::stoul(argv[++i]));
        else if (a == "--seconds" && i + 1 < argc)
            seconds = std::stol(argv[++i]);
        else {
            std::fprintf(stderr,
                         "usage: failure_drill [--messages N] [--seconds S] [--only sqs|kafka] "
                         "[--seed S]\n");
            return 2;
        }
    }
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    const std::chrono::milliseconds spread = seconds > 0 ? std::chrono::milliseconds(seconds * 1000)
                                                         : std::chrono::milliseconds(count * 8);
    bool ok = true;
    try {
        if (only.empty() || only == "sqs") ok = drill_sqs(count, seed, spread) && ok;
        if (only.empty() || only == "kafka")
            ok = drill_kafka(count, seed, spread, OUTBOX_KAFKA_MOCK_BROKER_PATH) && ok;
    } catch (const std::exception& e) {
        std::printf("the drill itself failed: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", ok ? "drill passed" : "drill FAILED");
    return ok ? 0 : 1;
}
