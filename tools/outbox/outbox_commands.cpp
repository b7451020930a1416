// The durable outbox from the command line: enqueue (store events), relay (deliver the
// backlog: relay_command.cpp), inspect, redrive and purge. See docs/cli.md and docs/outbox.md.
#include "outbox_commands.hpp"

#include "cli_io.hpp"
#include "delivery.hpp"
#include "json_lines.hpp"
#include "line_reader.hpp"
#include "outbox_command_support.hpp"
#include "read_ahead_window.hpp"
#include "report_file.hpp"

#include <outbox/json_string.hpp>
#include <outbox/outbox.hpp>
#include <outbox/sqlite_store.hpp>
#if OUTBOX_WITH_POSTGRESQL
#include <outbox/postgresql_store.hpp>
#endif

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

namespace outbox::cli {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

constexpr std::string_view enqueue_usage =
    "usage: outbox enqueue --store FILE|URI [--to TARGET] [--objects] [--report FILE] [FILE|-]\n"
    "Stores each JSON line (from FILE or standard input) durably for the relay: the line is\n"
    "the body, or with --objects an object as for send, which may name its own target in\n"
    "\"to\". A target is an SQS queue URL or kafka://HOST:PORT[,...]/TOPIC. --report writes\n"
    "{\"index\":N,\"status\":\"stored\",\"id\":\"ID\"} once a line is durable, or\n"
    "{\"index\":N,\"status\":\"refused\",\"error\":\"...\"} for one that can never be delivered.\n"
    "Exit status: 0 all stored, 1 some refused, 2 usage, input, store or report error,\n"
    "128+N stopped by signal N (what was read is stored first).\n";

constexpr std::string_view inspect_usage =
    "usage: outbox inspect --store FILE|URI [--json] [--check]\n"
    "Per target: events pending (waiting, in flight or retrying), retrying, dead, the age of\n"
    "the oldest pending event, the last error. --json prints\n"
    "{\"targets\":[{\"target\",\"pending\",\"retrying\",\"dead\",\"oldest_pending_age_s\",\n"
    "\"last_error\"}]}. --check (a FILE): first reads the whole file with SQLite's integrity\n"
    "check, which opening a store otherwise runs only when its WAL is there (an unclean\n"
    "stop, or another process has it open).\n";

constexpr std::string_view redrive_usage =
    "usage: outbox redrive --store FILE|URI [--target TARGET]\n"
    "Dead letters (of TARGET, or all) back to pending, due now; prints how many.\n";

constexpr std::string_view purge_usage =
    "usage: outbox purge --store FILE|URI --target TARGET\n"
    "Removes every event of TARGET, pending or dead; prints how many.\n";

}  // namespace

OutboxStorePtr open_store(const std::string& path, std::string& error, bool create,
                          std::chrono::seconds claim_lease, IntegrityCheck check) {
    try {
        if (is_postgresql(path)) {
#if OUTBOX_WITH_POSTGRESQL
            PostgresqlStoreOptions options;
            options.claim_lease = claim_lease;
            return open_postgresql_store(path, options);
#else
            error = "this outbox was built without PostgreSQL (OUTBOX_WITH_POSTGRESQL)";
            return nullptr;
#endif
        }
        SqliteStoreOptions options;
        options.create_if_missing = create;
        options.check_integrity = check;
        return open_sqlite_store(path, options);
    } catch (const StoreError& e) {
        error = e.what();
        return nullptr;
    }
}

StopSignals::StopSignals(asio::io_context& io) : signals_(io, SIGINT, SIGTERM) {
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
    arm();
}

StopSignals::~StopSignals() {
    for (int fd : wake_)
        if (fd >= 0) ::close(fd);
}

void StopSignals::arm() {
    signals_.async_wait([this](error_code ec, int sig) {
        if (ec) return;
        int expected = 0;
        if (signal_.compare_exchange_strong(expected, sig)) {
            const char byte = 1;
            [[maybe_unused]] const auto n = ::write(wake_[1], &byte, 1);
            if (on_signal_) on_signal_(sig);
        }
        arm();
    });
}

int run_enqueue(int argc, char** argv) {
    std::string store_path, to, report_path, input = "-";
    bool objects = false, input_given = false;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        if (a == "-h" || a == "--help") {
            std::cout << enqueue_usage;
            return 0;
        } else if (a == "--store") {
            if (!value(store_path) || store_path.empty())
                return usage_error("enqueue: --store needs a file or a postgresql:// URI");
        } else if (a == "--to") {
            if (!value(to) || to.empty()) return usage_error("enqueue: --to needs a target");
        } else if (a == "--report") {
            if (!value(report_path)) return usage_error("enqueue: --report needs a file name");
        } else if (a == "--objects") {
            objects = true;
        } else if (a.size() > 1 && a.front() == '-') {
            return usage_error("enqueue: unknown option " + std::string(a) + "\n" +
                               std::string(enqueue_usage));
        } else if (!input_given) {
            input = a;
            input_given = true;
        } else {
            return usage_error("enqueue: more than one input file");
        }
    }
    if (store_path.empty())
        return usage_error("enqueue: missing --store FILE|URI\n" + std::string(enqueue_usage));
    if (to.empty() && !objects)
        return usage_error("enqueue: --to TARGET is needed unless --objects lines carry \"to\"");
    if (!to.empty()) {
        if (auto why = why_not_a_target(to); !why.empty())
            return usage_error("enqueue: --to: " + why);
    }

    LineReader reader;
    if (std::string why; !reader.open(input, why))
        return usage_error("enqueue: cannot read " + (input == "-" ? "standard input" : input) +
                           ": " + why);
    ReportFile report;
    if (!report_path.empty()) {
        if (same_file(reader.fd(), report_path))
            return usage_error("enqueue: the report " + report_path + " is the input file");
        if (!is_postgresql(store_path) && report_is_store_file(report_path, store_path))
            return usage_error("enqueue: the report " + report_path +
                               " is the store's file: writing it would destroy the events");
        if (std::string why; !report.open(report_path, why))
            return usage_error("enqueue: cannot write the report " + report_path + ": " + why);
    }
    std::string error;
    OutboxStorePtr store = open_store(store_path, error);
    if (!store) return usage_error("enqueue: " + error);

    asio::io_context io;
    OutboxConfig config;
    config.store = std::move(store);
    config.relay = false;
    // Refused at once: what its destination would refuse before any request. Size is left to
    // the relay, which may stage large bodies.
    // (This program enqueues from one thread: the check's memory of the last target is safe.)
    config.validate = [check = std::make_shared<UndeliverableCheck>(false, false)](
                          const std::string& target, const Message& m) {
        return (*check)(target, m);
    };
    if (env("OUTBOX_DEBUG")) config.logger = stderr_logger(LogLevel::debug);
    std::optional<Outbox> outbox;
    try {
        outbox.emplace(io.get_executor(), std::move(config));
    } catch (const std::exception& e) {
        return usage_error(std::string("enqueue: ") + e.what());
    }

    auto work = asio::make_work_guard(io);
    StopSignals signals(io);
    reader.stop_on(signals.wake_fd());
    std::mutex mutex;
    std::condition_variable room;
    ReadAheadWindow window(8192, 0);  // under mutex: events read and not yet stored or refused
    std::uint64_t stored = 0, refused = 0;
    std::string first_refusal, store_failure;
    signals.on_signal([&](int) {
        std::lock_guard lock(mutex);
        room.notify_all();
    });
    std::thread io_thread([&] { io.run(); });

    bool flush_posted = false;  // on the I/O thread
    auto record = [&](std::uint64_t index, error_code ec, const EnqueueResult& r) {
        std::string line = "{\"index\":" + std::to_string(index) + ",\"status\":";
        if (!ec) {
            line += "\"stored\",\"id\":\"" + std::to_string(r.id) + "\"}\n";
        } else {
            std::string why = ec.message() + (r.error.empty() ? "" : ": " + r.error);
            line += "\"refused\",\"error\":";
            append_json_string(line, why);
            line += "}\n";
            std::lock_guard lock(mutex);
            if (first_refusal.empty()) first_refusal = why;
            if (ec == Errc::store_error || ec == Errc::store_full) store_failure = why;
        }
        report.write_line(line);
        // Once per batch of completions (they arrive together): a line is in the file soon
        // after its event is durable, and a crash loses few.
        if (!flush_posted) {
            flush_posted = true;
            asio::post(io, [&] {
                flush_posted = false;
                report.flush();
            });
        }
    };

    simdjson::dom::parser parser;
    std::string_view text;
    std::uint64_t index = 0;
    std::string input_error;
    for (;; ++index) {
        const LineReader::Next next = reader.next(text);
        if (next == LineReader::Next::end) break;
        if (next == LineReader::Next::error) {
            input_error = "cannot read " + (input == "-" ? std::string("standard input") : input) +
                          " after " + std::to_string(index) + " lines: " + reader.error();
            break;
        }
        if (next == LineReader::Next::stopped || report.failed()) break;
        if (text.find_first_not_of(" \t") == std::string_view::npos) continue;
        Message message;
        std::string target = to, why;
        if (objects && !parse_object_line(parser, text, message, why, &target)) {
            asio::post(io, [&, index, why] {
                record(index, Errc::invalid_message,
                       {0, "line " + std::to_string(index + 1) + ": " + why});
                std::lock_guard lock(mutex);
                ++refused;
            });
            continue;
        }
        if (!objects) message.body.assign(text);
        if (target.empty()) {
            asio::post(io, [&, index] {
                record(index, Errc::invalid_message,
                       {0, "line " + std::to_string(index + 1) + ": no target (--to, or \"to\")"});
                std::lock_guard lock(mutex);
                ++refused;
            });
            continue;
        }
        {
            // After a signal the line read last is still stored (no waiting for room), then
            // the reading stops.
            std::unique_lock lock(mutex);
            if (!window.has_room(0) && signals.signal() == 0) {
                window.start_waiting(0);
                room.wait(lock, [&] { return signals.signal() != 0 || window.reader_may_go(); });
                window.stop_waiting();
            }
            window.add(0);
        }
        outbox->async_enqueue(std::move(target), std::move(message),
                              [&, index](error_code ec, EnqueueResult r) {
                                  record(index, ec, r);
                                  std::lock_guard lock(mutex);
                                  (ec ? refused : stored) += 1;
                                  if (window.remove(0)) room.notify_all();
                              });
        if (signals.signal() != 0) {
            ++index;
            break;
        }
    }
    {
        std::unique_lock lock(mutex);
        room.wait(lock, [&] { return window.outstanding() == 0; });  // stored (durable) or refused
    }
    std::promise<void> released;
    asio::post(io, [&] {
        signals.cancel();
        outbox.reset();  // commits nothing more: every enqueue has completed
        released.set_value();
    });
    released.get_future().wait();
    work.reset();
    io_thread.join();
    const bool report_ok = report.close();
    std::fprintf(stderr, "stored %llu, refused %llu\n", static_cast<unsigned long long>(stored),
                 static_cast<unsigned long long>(refused));
    if (!first_refusal.empty()) std::fprintf(stderr, "first refusal: %s\n", first_refusal.c_str());
    if (!input_error.empty()) std::fprintf(stderr, "outbox: enqueue: %s\n", input_error.c_str());
    if (!report_ok) std::fprintf(stderr, "outbox: enqueue: %s\n", report.error().c_str());
    if (signals.signal() != 0) {
        std::fprintf(stderr, "outbox: enqueue: stopped by %s after %llu input lines\n",
                     signal_name(signals.signal()), static_cast<unsigned long long>(index));
        return 128 + signals.signal();
    }
    if (!input_error.empty() || !report_ok || !store_failure.empty()) return 2;
    return refused == 0 ? 0 : 1;
}

int run_inspect(int argc, char** argv) {
    std::string store_path;
    bool json = false;
    bool check = false;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            std::cout << inspect_usage;
            return 0;
        } else if (a == "--store" && i + 1 < argc) {
            store_path = argv[++i];
        } else if (a == "--json") {
            json = true;
        } else if (a == "--check") {
            check = true;
        } else {
            return usage_error("inspect: unknown option " + std::string(a) + "\n" +
                               std::string(inspect_usage));
        }
    }
    if (store_path.empty())
        return usage_error("inspect: missing --store FILE|URI\n" + std::string(inspect_usage));
    if (check && is_postgresql(store_path))
        return usage_error(
            "inspect: --check reads an SQLite file; PostgreSQL checks its own pages (initdb "
            "--data-checksums, pg_amcheck)");
    std::string error;
    OutboxStorePtr store =
        open_store(store_path, error, false, std::chrono::seconds(300),
                   check ? IntegrityCheck::always : IntegrityCheck::after_unclean_stop);
    if (!store) return usage_error("inspect: " + error);
    std::vector<TargetSummary> targets;
    try {
        targets = store->summarize();
    } catch (const StoreError& e) {
        return usage_error(std::string("inspect: ") + e.what());
    }
    const auto now = std::chrono::system_clock::now();
    auto age = [&](const TargetSummary& t) -> long long {
        if (!t.oldest_pending) return -1;
        return std::chrono::duration_cast<std::chrono::seconds>(now - *t.oldest_pending).count();
    };
    // An open breaker's next probe, in seconds from now (a probe already due: 0).
    auto probe_in = [&](const TargetSummary& t) -> long long {
        return std::max<long long>(
            0, std::chrono::duration_cast<std::chrono::seconds>(*t.next_probe_at - now).count());
    };
    if (json) {
        std::string out = "{\"targets\":[";
        for (std::size_t i = 0; i < targets.size(); ++i) {
            const auto& t = targets[i];
            if (i) out += ',';
            out += "{\"target\":";
            append_json_string(out, t.target);
            out += ",\"pending\":" + std::to_string(t.pending) +
                   ",\"retrying\":" + std::to_string(t.retrying) +
                   ",\"dead\":" + std::to_string(t.dead) + ",\"oldest_pending_age_s\":" +
                   (t.oldest_pending ? std::to_string(age(t)) : std::string("null")) +
                   ",\"last_error\":";
            if (t.last_error.empty())
                out += "null";
            else
                append_json_string(out, t.last_error);
            out += ",\"health\":\"" + std::string(to_string(t.health)) +
                   "\",\"consecutive_failures\":" + std::to_string(t.consecutive_failures) +
                   ",\"next_probe_in_s\":" +
                   (t.next_probe_at ? std::to_string(probe_in(t)) : std::string("null"));
            out += '}';
        }
        out += "]";
        if (check) out += ",\"integrity_check\":\"ok\"";
        out += "}\n";
        std::cout << out;
        return 0;
    }
    if (check) std::cout << "integrity check: ok\n";
    if (targets.empty()) {
        std::cout << "the store is empty\n";
        return 0;
    }
    std::printf("%-60s %9s %9s %9s %12s %-36s  %s\n", "target", "pending", "retrying", "dead",
                "oldest", "relay's breaker", "last error");
    for (const auto& t : targets) {
        std::string breaker = to_string(t.health);
        if (t.health != TargetHealth::healthy)
            breaker += ", " + std::to_string(t.consecutive_failures) + " failed";
        if (t.next_probe_at) breaker += ", probe in " + std::to_string(probe_in(t)) + " s";
        std::printf("%-60s %9llu %9llu %9llu %12s %-36s  %s\n", t.target.c_str(),
                    static_cast<unsigned long long>(t.pending),
                    static_cast<unsigned long long>(t.retrying),
                    static_cast<unsigned long long>(t.dead),
                    t.oldest_pending ? (std::to_string(age(t)) + " s").c_str() : "-",
                    breaker.c_str(), t.last_error.substr(0, 120).c_str());
    }
    return 0;
}

namespace {
int run_count_command(std::string_view name, std::string_view usage, int argc, char** argv,
                      bool target_required,
                      const std::function<std::uint64_t(OutboxStore&, const std::string&)>& act) {
    std::string store_path, target;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "--store" && i + 1 < argc) {
            store_path = argv[++i];
        } else if (a == "--target" && i + 1 < argc) {
            target = argv[++i];
        } else {
            return usage_error(std::string(name) + ": unknown option " + std::string(a) + "\n" +
                               std::string(usage));
        }
    }
    if (store_path.empty() || (target_required && target.empty()))
        return usage_error(std::string(name) + ": missing an option\n" + std::string(usage));
    std::string error;
    OutboxStorePtr store = open_store(store_path, error, false);
    if (!store) return usage_error(std::string(name) + ": " + error);
    try {
        std::cout << (name == "redrive" ? "redriven " : "purged ") << act(*store, target) << "\n";
    } catch (const StoreError& e) {
        return usage_error(std::string(name) + ": " + e.what());
    }
    return 0;
}

}  // namespace

int run_redrive(int argc, char** argv) {
    return run_count_command("redrive", redrive_usage, argc, argv, false,
                             [](OutboxStore& s, const std::string& target) {
                                 return s.redrive(target, std::chrono::system_clock::now());
                             });
}

int run_purge(int argc, char** argv) {
    return run_count_command(
        "purge", purge_usage, argc, argv, true,
        [](OutboxStore& s, const std::string& target) { return s.purge(target); });
}

}  // namespace outbox::cli
