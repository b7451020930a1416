// KafkaDestination beside plain librdkafka, producing the same 1 KiB messages to the same
// local mock cluster (tests/peers/kafka_mock: librdkafka's mock brokers in their own process)
// with the same settings: acks=all, idempotence, linger 5 ms, the same queue limits. Each
// run happens in a fresh child process so that CPU time and peak memory are its own.
// Prints messages per second, CPU microseconds per message and peak resident memory.
//
// Then the programs: `kcat -P` and `outbox send --to kafka://`, the same file of 1 KiB JSON
// lines (at most 1,000,000) with the same settings, each in its own process.
//
// Usage: kafka_bench [MESSAGES] [REPETITIONS]   (default 1000000 2)
#include "bench_support.hpp"

#include <outbox/kafka_destination.hpp>
#include <outbox/latency_histogram.hpp>

#include <librdkafka/rdkafka.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t body_size = 1024;
constexpr int queue_messages = 100000;
constexpr int queue_kbytes = 65536;

double cpu_seconds() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

// The calling thread's own: where the producing code runs, apart from librdkafka's broker
// threads, whose share moves with how the messages happen to be batched.
double thread_cpu_seconds() {
    rusage r{};
    getrusage(RUSAGE_THREAD, &r);
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

long peak_kib() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    return r.ru_maxrss;
}

struct Result {
    long messages = 0;
    long failed = 0;
    double seconds = 0;
    double cpu = 0;
    double caller_cpu = 0;  // of it, the calling thread's
    long peak_mib = 0;
    // Produce call to delivery report: librdkafka's own measure for plain, the destination's
    // histogram for outbox.
    outbox::LatencyHistogram latency{};
};

void record_latency(outbox::LatencyHistogram& h, std::int64_t us) {
    if (us < 0) return;
    const auto u = static_cast<std::uint64_t>(us);
    ++h.buckets[outbox::LatencyHistogram::bucket_of(u)];
    ++h.count;
    h.sum += std::chrono::microseconds(us);
    h.max = std::max(h.max, std::chrono::microseconds(us));
}

void report(const char* client, const Result& r) {
    std::printf("%-28s %12.0f %16.2f %14ld %8ld %16.2f\n", client, r.messages / r.seconds,
                r.cpu * 1e6 / r.messages, r.peak_mib, r.failed, r.caller_cpu * 1e6 / r.messages);
    std::fflush(stdout);
}

// ---- plain librdkafka ---------------------------------------------------------------------

long plain_delivered = 0, plain_failed = 0;
outbox::LatencyHistogram plain_latency;

void on_plain_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    (m->err ? plain_failed : plain_delivered) += 1;
    if (!m->err) record_latency(plain_latency, rd_kafka_message_latency(m));
}

Result run_plain(const std::string& bootstrap, const std::string& topic, long messages) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* name, const std::string& value) {
        if (rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
            throw std::runtime_error(err);
    };
    set("bootstrap.servers", bootstrap);
    set("acks", "all");
    set("enable.idempotence", "true");
    set("linger.ms", "5");
    set("message.max.bytes", "1001024");
    set("queue.buffering.max.messages", std::to_string(queue_messages));
    set("queue.buffering.max.kbytes", std::to_string(queue_kbytes));
    rd_kafka_conf_set_dr_msg_cb(conf, on_plain_delivery);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) throw std::runtime_error(err);
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const std::string body(body_size, 'p');

    const double cpu0 = cpu_seconds(), caller_cpu0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    for (long i = 0; i < messages; ++i) {
        while (rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(body.data()), body.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 1);
        if (i % 1000 == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    Result r;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.cpu = cpu_seconds() - cpu0;
    r.caller_cpu = thread_cpu_seconds() - caller_cpu0;
    r.messages = plain_delivered;
    r.failed = plain_failed + (messages - plain_delivered - plain_failed);
    r.latency = plain_latency;
    r.peak_mib = peak_kib() / 1024;
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return r;
}

// ---- outbox --------------------------------------------------------------------------------

Result run_outbox(const std::string& bootstrap, const std::string& topic, long messages) {
    boost::asio::io_context io(1);
    outbox::KafkaDestinationConfig config;
    config.bootstrap_servers = bootstrap;
    config.topic = topic;
    config.security = outbox::KafkaSecurity::plaintext;
    config.linger = std::chrono::milliseconds(5);
    config.max_in_flight_messages = queue_messages;
    config.max_in_flight_bytes = std::size_t(queue_kbytes) * 1024;
    outbox::KafkaDestination kafka(io.get_executor(), config);
    const std::string body(body_size, 'o');
    long delivered = 0, failed = 0, outstanding = 0;
    auto on_done = [&](boost::system::error_code ec, const outbox::Receipt&) {
        (ec ? failed : delivered) += 1;
        --outstanding;
    };
    // Callers hold at most this many sends open, as a backend with its own bound would.
    const long window = queue_messages + queue_messages / 10;

    const double cpu0 = cpu_seconds(), caller_cpu0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    for (long i = 0; i < messages; ++i) {
        outbox::Message m;
        m.body = body;
        ++outstanding;
        kafka.async_send(std::move(m), on_done);
        // run_one and poll stop the context whenever it runs out of work for a moment.
        while (outstanding >= window) {
            io.restart();
            io.run_one();
        }
        if (i % 1000 == 0) {
            io.restart();
            io.poll();
        }
    }
    while (outstanding > 0) {
        io.restart();
        io.run_one();
    }
    Result r;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.cpu = cpu_seconds() - cpu0;
    r.caller_cpu = thread_cpu_seconds() - caller_cpu0;
    r.messages = delivered;
    r.failed = failed;
    r.latency = kafka.stats().latency;
    r.peak_mib = peak_kib() / 1024;
    return r;
}

// ---- the programs: kcat -P and outbox send, the same file to the same cluster --------------

#ifdef OUTBOX_CLI_PATH
// CPU per line of a program that sends `input` (one message per line) to `topic`: its own
// process, start-up and flush included. Both take the settings above; neither sets a key.
// kcat keeps librdkafka's default partitioner (sticky for keyless messages, as plain librdkafka
// above), outbox balances each message by least bytes.
double program_cpu_per_line(const char* what, long lines, const std::function<void()>& exec) {
    const outbox::bench::ChildRun run = outbox::bench::run_child(what, exec);
    if (!run.ok) return -1;
    std::printf("%-28s %12.0f %16.2f %14s %8s\n", what, double(lines) / run.seconds,
                run.cpu_seconds * 1e6 / double(lines), "", "");
    std::fflush(stdout);
    return run.cpu_seconds * 1e6 / double(lines);
}

double run_kcat(const std::string& bootstrap, const std::string& topic, const std::string& input,
                long lines) {
    const std::string max_messages =
        "queue.buffering.max.messages=" + std::to_string(queue_messages);
    const std::string max_kbytes = "queue.buffering.max.kbytes=" + std::to_string(queue_kbytes);
    return program_cpu_per_line("kcat -P", lines, [&] {
        ::execlp("kcat", "kcat", "-P", "-b", bootstrap.c_str(), "-t", topic.c_str(), "-X",
                 "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5", "-X",
                 "message.max.bytes=1001024", "-X", max_messages.c_str(), "-X", max_kbytes.c_str(),
                 "-l", input.c_str(), static_cast<char*>(nullptr));
    });
}

double run_program(const std::string& bootstrap, const std::string& topic, const std::string& input,
                   long lines) {
    const std::string to = "kafka://" + bootstrap + "/" + topic;
    return program_cpu_per_line("outbox send --to kafka://", lines, [&] {
        std::freopen("/dev/null", "w", stdout);  // its reports
        ::execl(OUTBOX_CLI_PATH, "outbox", "send", "--to", to.c_str(), "--plaintext", input.c_str(),
                static_cast<char*>(nullptr));
    });
}
#endif

// ---- the mock cluster, in its own process ----------------------------------------------------

struct MockCluster {
    pid_t pid = -1;
    std::string bootstrap;

    MockCluster() {
        int out[2];
        if (pipe(out) != 0) throw std::runtime_error("pipe");
        pid = fork();
        if (pid == 0) {
            dup2(out[1], STDOUT_FILENO);
            close(out[0]);
            close(out[1]);
            execl(OUTBOX_KAFKA_MOCK_BROKER, OUTBOX_KAFKA_MOCK_BROKER, "--brokers", "3",
                  static_cast<char*>(nullptr));
            _exit(127);
        }
        close(out[1]);
        std::string line;
        char c;
        while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
        close(out[0]);
        const auto at = line.find("\"bootstrap\": \"");
        if (at == std::string::npos) throw std::runtime_error("mock cluster did not start");
        bootstrap = line.substr(at + 14, line.find('"', at + 14) - at - 14);
    }
    ~MockCluster() {
        kill(pid, SIGTERM);
        waitpid(pid, nullptr, 0);
    }
};

// Runs `run` (which returns a Result) in a fresh child process, so that each client's CPU
// time and peak RSS are its own; the Result comes back through a pipe.
template <class Run>
std::optional<Result> in_child(Run run) {
    std::fflush(stdout);
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    const pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        const Result r = run();
        const char* p = reinterpret_cast<const char*>(&r);
        for (std::size_t left = sizeof r; left > 0;) {
            const ssize_t n = write(fds[1], p, left);
            if (n <= 0) _exit(1);
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        std::fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    Result r;
    char* p = reinterpret_cast<char*>(&r);
    std::size_t got = 0;
    while (got < sizeof r) {
        const ssize_t n = read(fds[0], p + got, sizeof r - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != sizeof r) {
        std::printf("  (run failed: status %d)\n", status);
        return std::nullopt;
    }
    return r;
}

static_assert(std::is_trivially_copyable_v<Result>, "sent through a pipe as bytes");

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double ms(const outbox::LatencyHistogram& h, double q) {
    return double(h.percentile(q).count()) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
    const long messages = argc > 1 ? std::atol(argv[1]) : 1000000;
    const int repetitions = argc > 2 ? std::atoi(argv[2]) : 2;
    MockCluster cluster;
    std::printf(
        "%ld messages of %zu bytes, acks=all, idempotence, linger 5 ms, queue %d messages"
        " / %d KiB;\nmock cluster of 3 brokers in its own process (%s)\n\n",
        messages, body_size, queue_messages, queue_kbytes, cluster.bootstrap.c_str());
    std::printf("%-28s %12s %16s %14s %8s %16s\n", "client", "messages/s", "CPU us/message",
                "peak RSS MiB", "failed", "caller's thread");
    // KAFKA_BENCH_ONLY=plain|outbox|programs runs one side (for perf record).
    const std::string only = std::getenv("KAFKA_BENCH_ONLY") ? std::getenv("KAFKA_BENCH_ONLY") : "";
    std::vector<double> plain_cpu, outbox_cpu;
    Result last_plain, last_outbox;
    for (int rep = 0; rep < repetitions; ++rep) {
        const std::string n = std::to_string(rep);
        if (only.empty() || only == "plain")
            if (auto r = in_child(
                    [&] { return run_plain(cluster.bootstrap, "plain-" + n, messages); })) {
                report("plain librdkafka", *r);
                plain_cpu.push_back(r->cpu * 1e6 / double(r->messages));
                last_plain = *r;
            }
        if (only.empty() || only == "outbox")
            if (auto r = in_child(
                    [&] { return run_outbox(cluster.bootstrap, "outbox-" + n, messages); })) {
                report("outbox KafkaDestination", *r);
                outbox_cpu.push_back(r->cpu * 1e6 / double(r->messages));
                last_outbox = *r;
            }
    }
#ifdef OUTBOX_CLI_PATH
    // The programs, on at most 1,000,000 lines of the side-by-side benchmarks' 1 KiB JSON event.
    std::vector<double> kcat_cpu, program_cpu;
    if (only.empty() || only == "programs") {
        const long lines = std::min(messages, 1000000L);
        const std::string input = (std::filesystem::temp_directory_path() /
                                   ("outbox-kafka-bench-" + std::to_string(getpid()) + ".jsonl"))
                                      .string();
        {
            std::ofstream out(input);
            const std::string body = outbox::bench::body_of_1kib();
            for (long i = 0; i < lines; ++i) out << body << '\n';
        }
        for (int rep = 0; rep < repetitions; ++rep) {
            const std::string n = std::to_string(rep);
            if (const double c = run_kcat(cluster.bootstrap, "kcat-" + n, input, lines); c > 0)
                kcat_cpu.push_back(c);
            if (const double c = run_program(cluster.bootstrap, "program-" + n, input, lines);
                c > 0)
                program_cpu.push_back(c);
        }
        std::filesystem::remove(input);
    }
    if (!kcat_cpu.empty() && !program_cpu.empty())
        outbox::bench::print_figure("kafka_bench", "outbox send / kcat -P", median(program_cpu),
                                    median(kcat_cpu), "us CPU/message", 1.10);
#endif
    if (!plain_cpu.empty() && !outbox_cpu.empty())
        outbox::bench::print_figure("kafka_bench", "KafkaDestination / plain librdkafka",
                                    median(outbox_cpu), median(plain_cpu), "us CPU/message", 1.10);
    if (!plain_cpu.empty())
        outbox::bench::print_latency("kafka_bench", "plain librdkafka", ms(last_plain.latency, 0.5),
                                     ms(last_plain.latency, 0.9), ms(last_plain.latency, 0.99),
                                     ms(last_plain.latency, 0.999));
    if (!outbox_cpu.empty())
        outbox::bench::print_latency("kafka_bench", "outbox KafkaDestination",
                                     ms(last_outbox.latency, 0.5), ms(last_outbox.latency, 0.9),
                                     ms(last_outbox.latency, 0.99), ms(last_outbox.latency, 0.999));
    return 0;
}
