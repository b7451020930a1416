// The crash drill of the durable outbox: the real `outbox enqueue` and `outbox relay`
// programs store and deliver N events while this program kills them with SIGKILL at random
// moments, again and again, and starts them again. The events go to a local SQS behind the
// fault-injecting proxy, or with --kafka to librdkafka's mock cluster (in this process) whose
// brokers go down and come back at random moments. Then a last relay runs until only dead
// letters are left, and the drill counts:
//   - every event whose enqueue was reported durable is at the destination (read back by the
//     AWS SDK for JavaScript, or kcat), at least once; how many arrived twice is printed;
//   - nothing arrived that was never enqueued;
//   - a quarter of the events are in four groups. SQS: they go to a FIFO queue, and each
//     group's first copies arrive in the order they were enqueued. Kafka (no keys): within
//     each partition, a group's events written once are in the order they were enqueued;
//   - the store's dead letters are exactly the planted ones (events to a queue that does not
//     exist, or a topic the cluster refuses), and nothing is left pending.
// With --postgresql the store is a PostgreSQL server of the drill's own and three relays run
// at once on it: each round one is killed with SIGKILL at a random moment, one is stopped
// with SIGTERM, and the third is killed with the enqueue; the others take over the killed
// one's events when its claims' lease (8 s) runs out.
// Exit status 0 when all hold, 1 otherwise. ctest runs short drills (outbox_crash_drill_short,
// outbox_crash_drill_kafka_short, outbox_crash_drill_postgresql_short); `scripts/dev drill`
// long ones.
//
//   outbox_crash_drill [--kafka] [--postgresql] [--events N] [--kills K] [--seed S]
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"
#if OUTBOX_WITH_KAFKA
#include "kafka_mock.hpp"
#endif

#include <outbox/sqlite_store.hpp>
#if OUTBOX_WITH_POSTGRESQL
#include "postgres_server.hpp"

#include <outbox/postgresql_store.hpp>
#endif

#include <simdjson.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

const std::string access_key = "AKIDOUTBOXTEST";
const std::string secret_key = "outbox-test-secret";

// A child process of the outbox program, killed or waited for.
class Child {
  public:
    Child(const std::vector<std::string>& argv, const std::string& log) {
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            const int null = ::open("/dev/null", O_RDONLY);
            ::dup2(null, 0);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execve(args[0], args.data(), environ);
            ::_exit(127);
        }
    }
    ~Child() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    void kill() { ::kill(pid_, SIGKILL); }
    void terminate() { ::kill(pid_, SIGTERM); }
    int wait() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    bool running() {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) reaped_ = true;
        return r == 0;
    }

  private:
    pid_t pid_ = -1;
    bool reaped_ = false;
};

// The indexes an enqueue report says were stored (a line cut by SIGKILL is ignored).
std::set<int> stored_in(const std::string& report) {
    std::set<int> out;
    std::ifstream in(report);
    simdjson::dom::parser parser;
    for (std::string line; std::getline(in, line);) {
        simdjson::dom::object o;
        if (parser.parse(line).get_object().get(o) != simdjson::SUCCESS) continue;
        std::string_view status;
        std::int64_t index = 0;
        if (o["status"].get_string().get(status) == simdjson::SUCCESS && status == "stored" &&
            o["index"].get_int64().get(index) == simdjson::SUCCESS)
            out.insert(static_cast<int>(index));
    }
    return out;
}

// Where the drill's events go, and how they are read back.
struct Destinations {
    std::string queue, grouped, refused;  // targets: plain, four groups, planted dead letters
    std::vector<std::string> relay_options;
    virtual ~Destinations() = default;
    // Called at random moments of a round, and with `end_of_round` before the next starts.
    virtual void trouble(std::mt19937&, bool /*end_of_round*/) {}
    // What arrived: each body, and for grouped events whether the order held.
    virtual std::vector<std::string> read_plain() = 0;
    virtual std::vector<std::string> read_grouped(std::size_t& out_of_order) = 0;
    virtual std::string faults() const = 0;
};

int index_of(const std::string& body) {
    return std::stoi(body.substr(6));
}
int group_of(int index) {
    return index % 16 / 4;
}

struct SqsDestinations : Destinations {
    outbox::test::SigV4Proxy proxy;
    explicit SqsDestinations(unsigned seed)
        : proxy(outbox::test::fauxqs().port(), "sqs", access_key, secret_key,
                {"--faults", "500=0.03,lost=0.03,throttle=0.02,reset=0.02", "--seed",
                 std::to_string(seed)}) {
        const std::string run = "crash-drill-" + std::to_string(::getpid());
        queue = outbox::test::create_queue(run);
        grouped = outbox::test::create_queue(
            run + ".fifo", R"({"FifoQueue":"true","ContentBasedDeduplication":"false"})");
        refused = outbox::test::fauxqs().url() + "/000000000000/crash-drill-no-such-queue";
        relay_options = {"--endpoint", proxy.process.url()};
    }
    std::vector<std::string> read_plain() override {
        return outbox::test::drain_bodies(queue, 120);
    }
    // The FIFO queue hands its messages out in order: each group's first copies must be.
    std::vector<std::string> read_grouped(std::size_t& out_of_order) override {
        const auto bodies = outbox::test::drain_bodies(grouped, 120);
        std::set<std::string> seen;
        std::map<int, int> last_of_group;
        for (const auto& body : bodies) {
            if (!seen.insert(body).second) continue;  // a later copy
            const int index = index_of(body), group = group_of(index);
            if (last_of_group.count(group) && last_of_group[group] > index) ++out_of_order;
            last_of_group[group] = index;
        }
        return bodies;
    }
    std::string faults() const override {
        return "proxy: " + std::to_string(proxy.stat("requests")) + " requests, " +
               std::to_string(proxy.stat("faults.500") + proxy.stat("faults.lost") +
                              proxy.stat("faults.throttle") + proxy.stat("faults.reset")) +
               " faults injected";
    }
};

#if OUTBOX_WITH_KAFKA
struct KafkaDestinations : Destinations {
    outbox::test::KafkaMockCluster cluster{3};
    std::optional<int> down;  // the broker that is down, if one is
    int outages = 0;
    KafkaDestinations() {
        cluster.create_topic("drill", 3);
        cluster.create_topic("drill-grouped", 3);
        cluster.set_topic_error("drill-refused", 3);  // UNKNOWN_TOPIC_OR_PART: never delivered
        const std::string base = "kafka://" + cluster.bootstrap() + "/";
        queue = base + "drill";
        grouped = base + "drill-grouped";
        refused = base + "drill-refused";
        // A refused topic is known as such after a second, not librdkafka's default 30.
        relay_options = {"--plaintext", "-X", "topic.metadata.propagation.max.ms=1000"};
    }
    void trouble(std::mt19937& rng, bool end_of_round) override {
        if (down) {
            cluster.broker_up(*down);
            down.reset();
        }
        if (!end_of_round && rng() % 2 == 0) {
            down = 1 + static_cast<int>(rng() % 3);
            cluster.broker_down(*down);
            ++outages;
        }
    }
    std::vector<std::string> read_plain() override {
        std::vector<std::string> bodies;
        for (auto& r : outbox::test::kcat_read(cluster.bootstrap(), "drill"))
            bodies.push_back(std::move(r.payload));
        return bodies;
    }
    // No keys, so a group spans partitions; but its next event is written only once the one
    // before is acknowledged, so within a partition the events written once are in order.
    std::vector<std::string> read_grouped(std::size_t& out_of_order) override {
        const auto records = outbox::test::kcat_read(cluster.bootstrap(), "drill-grouped");
        std::map<std::string, int> copies;
        for (const auto& r : records) ++copies[r.payload];
        std::map<std::pair<int, int>, int> last;  // (partition, group) -> index
        std::vector<std::string> bodies;
        for (const auto& r : records) {  // kcat -e: each partition in offset order
            bodies.push_back(r.payload);
            if (copies[r.payload] > 1) continue;
            const int index = index_of(r.payload);
            const std::pair<int, int> key{r.partition, group_of(index)};
            if (last.count(key) && last[key] > index) ++out_of_order;
            last[key] = index;
        }
        return bodies;
    }
    std::string faults() const override {
        return "brokers: " + std::to_string(outages) + " outages";
    }
};
#endif

}  // namespace

int main(int argc, char** argv) {
    int events = 3000, kills = 10;
    unsigned seed = 11;
    bool kafka = false, postgresql = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--kafka")
            kafka = true;
        else if (a == "--postgresql")
            postgresql = true;
        else if (a == "--events" && i + 1 < argc)
            events = std::stoi(argv[++i]);
        else if (a == "--kills" && i + 1 < argc)
            kills = std::stoi(argv[++i]);
        else if (a == "--seed" && i + 1 < argc)
            seed = static_cast<unsigned>(std::stoul(argv[++i]));
        else {
            std::fprintf(stderr,
                         "usage: outbox_crash_drill [--kafka] [--postgresql] [--events N] [--kills "
                         "K] [--seed S]\n");
            return 2;
        }
    }
    ::setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ::setenv("AWS_ACCESS_KEY_ID", access_key.c_str(), 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", secret_key.c_str(), 1);
    ::setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    for (const char* name : {"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL",
                             "AWS_ENDPOINT_URL_SQS", "OUTBOX_DEBUG"})
        ::unsetenv(name);

    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("outbox-crash-drill-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::string store = (dir / "events.db").string();
#if OUTBOX_WITH_POSTGRESQL
    std::optional<outbox::test::PostgresServer> server;
    if (postgresql) {
        server.emplace();
        store = server->uri();
    }
#else
    if (postgresql) {
        std::fprintf(stderr, "outbox_crash_drill: this build has no PostgreSQL support\n");
        return 2;
    }
#endif
    const std::string log = (dir / "programs.log").string();
    std::mt19937 rng(seed);

    std::unique_ptr<Destinations> to;
    if (kafka) {
#if OUTBOX_WITH_KAFKA
        to = std::make_unique<KafkaDestinations>();
#else
        std::fprintf(stderr, "outbox_crash_drill: this build has no Kafka support\n");
        return 2;
#endif
    } else {
        to = std::make_unique<SqsDestinations>(seed);
    }
    // One event in 250 goes to a queue (topic) that does not exist: the planted dead letters.
    std::vector<std::string> lines;
    std::set<int> planted;
    for (int i = 0; i < events; ++i) {
        const bool refuse = i % 250 == 125;
        if (refuse) planted.insert(i);
        if (!refuse && i % 4 == 1)  // groups g0 to g3
            lines.push_back("{\"body\":\"drill-" + std::to_string(i) + "\",\"to\":\"" +
                            to->grouped + "\",\"group_id\":\"g" + std::to_string(group_of(i)) +
                            "\"}");
        else
            lines.push_back("{\"body\":\"drill-" + std::to_string(i) + "\",\"to\":\"" +
                            (refuse ? to->refused : to->queue) + "\"}");
    }
    std::vector<std::string> relay = {OUTBOX_CLI_PATH,    "relay", "--store",    store,
                                      "--retry-schedule", "1s",    "--max-age",  "1h",
                                      "--max-attempts",   "2",     "--deadline", "5"};
    relay.insert(relay.end(), to->relay_options.begin(), to->relay_options.end());
    if (postgresql) relay.insert(relay.end(), {"--claim-lease", "8s"});

    std::set<int> stored;
    int next = 0;  // the first line not yet handed to an enqueue
    const auto start = std::chrono::steady_clock::now();
    for (int round = 0; round < kills; ++round) {
        // Every line an earlier killed enqueue did not report stored, then the next ones: a
        // group's lines are first stored in the order of their indexes, which is what the
        // order check compares with (a cap on the lost ones let later lines go first).
        std::vector<int> chunk;
        for (int i = 0; i < next; ++i)
            if (!stored.count(i)) chunk.push_back(i);
        const int take = std::max(1, events / kills);
        for (int taken = 0; next < events && taken < take + 200; ++next, ++taken)
            chunk.push_back(next);
        const std::string input = (dir / ("in-" + std::to_string(round) + ".jsonl")).string();
        const std::string report = (dir / ("report-" + std::to_string(round) + ".jsonl")).string();
        {
            std::ofstream out(input);
            for (int i : chunk) out << lines[static_cast<std::size_t>(i)] << "\n";
        }
        Child relaying(relay, log);
        // PostgreSQL: two more relays on the same store, one to be killed at a random moment,
        // one to be stopped with SIGTERM.
        std::optional<Child> doomed, stopped;
        if (postgresql) {
            doomed.emplace(relay, log);
            stopped.emplace(relay, log);
        }
        Child enqueueing(
            {OUTBOX_CLI_PATH, "enqueue", "--store", store, "--objects", "--report", report, input},
            log);
        // A random moment, then SIGKILL: to both, or to one while the other goes on. Brokers
        // may go down on the way (Kafka).
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
        to->trouble(rng, false);
        const unsigned until_kill = 150 + rng() % 800;
        if (doomed) {  // mid-run, holding claims
            const unsigned at = rng() % until_kill;
            std::this_thread::sleep_for(std::chrono::milliseconds(at));
            doomed->kill();
            std::this_thread::sleep_for(std::chrono::milliseconds(until_kill - at));
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(until_kill));
        }
        switch (rng() % 3) {
            case 0:
                relaying.kill();
                enqueueing.kill();
                break;
            case 1:  // the relay goes on a little longer
                enqueueing.kill();
                std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 800));
                relaying.kill();
                break;
            default:  // the enqueue finishes its chunk without a relay
                relaying.kill();
                break;
        }
        if (stopped) {
            stopped->terminate();
            stopped->wait();
            doomed->wait();
        }
        enqueueing.wait();
        relaying.wait();
        to->trouble(rng, true);
        // Report lines are indexes into the chunk.
        for (int local : stored_in(report)) stored.insert(chunk[static_cast<std::size_t>(local)]);
    }
    // The rest, enqueued by a process nobody kills, then one relay until only dead letters.
    {
        std::vector<int> rest;
        for (int i = 0; i < events; ++i)
            if (!stored.count(i)) rest.push_back(i);
        const std::string input = (dir / "in-last.jsonl").string();
        const std::string report = (dir / "report-last.jsonl").string();
        {
            std::ofstream out(input);
            for (int i : rest) out << lines[static_cast<std::size_t>(i)] << "\n";
        }
        Child enqueueing(
            {OUTBOX_CLI_PATH, "enqueue", "--store", store, "--objects", "--report", report, input},
            log);
        const int status = enqueueing.wait();
        if (status != 0) std::printf("the last enqueue exited %d (see %s)\n", status, log.c_str());
        for (int local : stored_in(report)) stored.insert(rest[static_cast<std::size_t>(local)]);
    }
    std::vector<std::string> final_relay = relay;
    final_relay.push_back("--until-empty");
    const int relay_status = Child(final_relay, log).wait();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    // Count what the destinations hold, and what the store kept.
    std::map<std::string, int> copies;
    for (const auto& body : to->read_plain()) ++copies[body];
    std::size_t out_of_order = 0;
    for (const auto& body : to->read_grouped(out_of_order)) ++copies[body];
    std::string inspect;
    outbox::test::run_command({OUTBOX_CLI_PATH, "inspect", "--store", store, "--json"}, inspect);
    simdjson::dom::parser parser;
    std::uint64_t pending = 0, dead = 0;
    for (simdjson::dom::object t : parser.parse(inspect)["targets"].get_array()) {
        pending += std::uint64_t(t["pending"]);
        dead += std::uint64_t(t["dead"]);
    }
    // The dead letters, read from the store: every planted event, once or more (one stored
    // twice after a kill is two letters), and nothing else.
    std::set<int> dead_planted;
    std::size_t dead_others = 0;
#if OUTBOX_WITH_POSTGRESQL
    auto kept = outbox::open_store(store);
#else
    auto kept = outbox::open_sqlite_store(store);
#endif
    for (const auto& letter : kept->dead_letters("", 1000000)) {
        const int index = index_of(letter.message.body);
        if (planted.count(index))
            dead_planted.insert(index);
        else
            ++dead_others;
    }

    bool ok = stored.size() == static_cast<std::size_t>(events);
    std::size_t lost = 0, duplicates = 0, strangers = 0;
    for (int i = 0; i < events; ++i) {
        if (planted.count(i)) continue;
        const auto it = copies.find("drill-" + std::to_string(i));
        if (it == copies.end())
            ++lost;
        else
            duplicates += static_cast<std::size_t>(it->second - 1);
    }
    for (const auto& [body, n] : copies)
        if (!body.starts_with("drill-")) strangers += static_cast<std::size_t>(n);
    ok = ok && lost == 0 && strangers == 0 && out_of_order == 0 && pending == 0 &&
         dead_planted.size() == planted.size() && dead_others == 0 && relay_status == 1;
    std::printf(
        "crash drill (%s): %d events, %d rounds of SIGKILL, %.1f s\n"
        "  stored (enqueue reported durable): %zu of %d\n"
        "  delivered: %zu distinct, %zu duplicates (at least once), %zu lost, %zu never "
        "enqueued\n"
        "  groups: %zu first copies out of order\n"
        "  store afterwards: %llu pending, %llu dead letters (%zu of the %zu planted, %zu "
        "others); the last relay exited %d\n"
        "  %s\n"
        "%s\n",
        kafka ? (postgresql ? "Kafka, PostgreSQL store, 3 relays" : "Kafka")
              : (postgresql ? "SQS, PostgreSQL store, 3 relays" : "SQS"),
        events, kills, seconds, stored.size(), events, copies.size(), duplicates, lost, strangers,
        out_of_order, static_cast<unsigned long long>(pending),
        static_cast<unsigned long long>(dead), dead_planted.size(), planted.size(), dead_others,
        relay_status, to->faults().c_str(), ok ? "drill passed" : "drill FAILED");
    if (ok)
        fs::remove_all(dir);
    else
        std::printf("kept %s for a look (programs.log, the store, the reports)\n", dir.c_str());
    return ok ? 0 : 1;
}
