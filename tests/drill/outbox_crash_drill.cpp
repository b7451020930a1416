// The crash drill of the durable outbox: the real `outbox enqueue` and `outbox relay`
// programs store and deliver N events (to a local SQS behind the fault-injecting proxy) while
// this program kills them with SIGKILL at random moments, again and again, and starts them
// again. Then a last relay runs until only dead letters are left, and the drill counts:
//   - every event whose enqueue was reported durable is in the queue (read back by the AWS SDK
//     for JavaScript), at least once; how many arrived twice is printed;
//   - nothing arrived that was never enqueued;
//   - a quarter of the events go to a FIFO queue in four groups: each group's first copies
//     arrive in the order they were enqueued (a copy stored twice after a kill comes later);
//   - the store's dead letters are exactly the planted ones (events to a queue that does not
//     exist), and nothing is left pending.
// Exit status 0 when all hold, 1 otherwise. ctest runs a short drill (outbox_crash_drill_short);
// `scripts/dev drill` a long one.
//
//   outbox_crash_drill [--events N] [--kills K] [--seed S]
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"

#include <outbox/sqlite_store.hpp>

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

}  // namespace

int main(int argc, char** argv) {
    int events = 3000, kills = 10;
    unsigned seed = 11;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--events" && i + 1 < argc)
            events = std::stoi(argv[++i]);
        else if (a == "--kills" && i + 1 < argc)
            kills = std::stoi(argv[++i]);
        else if (a == "--seed" && i + 1 < argc)
            seed = static_cast<unsigned>(std::stoul(argv[++i]));
        else {
            std::fprintf(stderr, "usage: outbox_crash_drill [--events N] [--kills K] [--seed S]\n");
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
    const std::string store = (dir / "events.db").string();
    const std::string log = (dir / "programs.log").string();
    std::mt19937 rng(seed);

    const std::string queue =
        outbox::test::create_queue("crash-drill-" + std::to_string(::getpid()));
    const std::string fifo =
        outbox::test::create_queue("crash-drill-" + std::to_string(::getpid()) + ".fifo",
                                   R"({"FifoQueue":"true","ContentBasedDeduplication":"false"})");
    const std::string missing =
        outbox::test::fauxqs().url() + "/000000000000/crash-drill-no-such-queue";
    outbox::test::SigV4Proxy proxy(outbox::test::fauxqs().port(), "sqs", access_key, secret_key,
                                   {"--faults", "500=0.03,lost=0.03,throttle=0.02,reset=0.02",
                                    "--seed", std::to_string(seed)});
    // One event in 250 goes to a queue that does not exist: the planted dead letters.
    std::vector<std::string> lines;
    std::set<int> planted;
    for (int i = 0; i < events; ++i) {
        const bool refuse = i % 250 == 125;
        if (refuse) planted.insert(i);
        if (!refuse && i % 4 == 1)  // the FIFO queue, groups g0 to g3
            lines.push_back("{\"body\":\"drill-" + std::to_string(i) + "\",\"to\":\"" + fifo +
                            "\",\"group_id\":\"g" + std::to_string(i % 16 / 4) + "\"}");
        else
            lines.push_back("{\"body\":\"drill-" + std::to_string(i) + "\",\"to\":\"" +
                            (refuse ? missing : queue) + "\"}");
    }
    const std::vector<std::string> relay = {
        OUTBOX_CLI_PATH,    "relay", "--store",   store, "--endpoint",     proxy.process.url(),
        "--retry-schedule", "1s",    "--max-age", "1h",  "--max-attempts", "2",
        "--deadline",       "5"};

    std::set<int> stored;
    int next = 0;  // the first line not yet handed to an enqueue
    const auto start = std::chrono::steady_clock::now();
    for (int round = 0; round < kills; ++round) {
        // The next chunk of lines, and any reported lost by an earlier killed enqueue.
        std::vector<int> chunk;
        for (int i = 0; i < next; ++i)
            if (!stored.count(i) && chunk.size() < 200) chunk.push_back(i);
        const int take = std::max(1, events / kills);
        for (; next < events && static_cast<int>(chunk.size()) < take + 200; ++next)
            chunk.push_back(next);
        const std::string input = (dir / ("in-" + std::to_string(round) + ".jsonl")).string();
        const std::string report = (dir / ("report-" + std::to_string(round) + ".jsonl")).string();
        {
            std::ofstream out(input);
            for (int i : chunk) out << lines[static_cast<std::size_t>(i)] << "\n";
        }
        Child relaying(relay, log);
        Child enqueueing(
            {OUTBOX_CLI_PATH, "enqueue", "--store", store, "--objects", "--report", report, input},
            log);
        // A random moment, then SIGKILL: to both, or to one while the other goes on.
        std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 1200));
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
        enqueueing.wait();
        relaying.wait();
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

    // Count what the queues hold, and what the store kept.
    std::map<std::string, int> copies;
    for (const auto& body : outbox::test::drain_bodies(queue, 120)) ++copies[body];
    // The FIFO queue hands its messages out in order: each group's first copies must be.
    std::map<int, int> last_of_group;
    std::size_t out_of_order = 0;
    for (const auto& body : outbox::test::drain_bodies(fifo, 120)) {
        if (copies[body]++ > 0) continue;  // a later copy
        const int index = std::stoi(body.substr(6));
        const int group = index % 16 / 4;
        if (last_of_group.count(group) && last_of_group[group] > index) ++out_of_order;
        last_of_group[group] = index;
    }
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
    for (const auto& letter : outbox::open_sqlite_store(store)->dead_letters("", 1000000)) {
        const int index = std::stoi(letter.message.body.substr(6));
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
        "crash drill: %d events, %d rounds of SIGKILL, %.1f s\n"
        "  stored (enqueue reported durable): %zu of %d\n"
        "  in the queues: %zu distinct, %zu duplicates (at least once), %zu lost, %zu never "
        "enqueued\n"
        "  FIFO groups: %zu first copies out of order\n"
        "  store afterwards: %llu pending, %llu dead letters (%zu of the %zu planted, %zu "
        "others); the last relay exited %d\n"
        "  proxy: %llu requests, %llu faults injected\n"
        "%s\n",
        events, kills, seconds, stored.size(), events, copies.size(), duplicates, lost, strangers,
        out_of_order, static_cast<unsigned long long>(pending),
        static_cast<unsigned long long>(dead), dead_planted.size(), planted.size(), dead_others,
        relay_status, static_cast<unsigned long long>(proxy.stat("requests")),
        static_cast<unsigned long long>(proxy.stat("faults.500") + proxy.stat("faults.lost") +
                                        proxy.stat("faults.throttle") + proxy.stat("faults.reset")),
        ok ? "drill passed" : "drill FAILED");
    if (ok)
        fs::remove_all(dir);
    else
        std::printf("kept %s for a look (programs.log, the store, the reports)\n", dir.c_str());
    return ok ? 0 : 1;
}
