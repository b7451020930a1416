// `outbox relay`: delivering the store's backlog, with its retry schedule and progress; apart
// from the commands that store events or only look at the store (outbox_commands.cpp).
#include "outbox_commands.hpp"

#include "cli_io.hpp"
#include "delivery.hpp"
#include "metrics_server.hpp"
#include "outbox_command_support.hpp"
#include "report_file.hpp"

#include <outbox/json_string.hpp>
#include <outbox/outbox.hpp>
#include <outbox/prometheus_text.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::cli {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

constexpr std::string_view relay_usage =
    "usage: outbox relay --store FILE|URI [--until-empty] [--retry-schedule "
    "5s,5m,30m,2h,5h,10h,10h]\n"
    "                    [--max-age 72h] [--report FILE] [--grace SECONDS] [--stats]\n"
    "                    [--claim-lease 5m] [--max-in-flight 1024]\n"
    "                    [--max-in-flight-per-target N] [--metrics HOST:PORT]\n"
    "                    [--breaker FAILURES] [--breaker-open-for 30s]\n"
    "                    [delivery options]\n"
    "Delivers the store's backlog to each event's target until SIGINT or SIGTERM (then it\n"
    "starts no new delivery, gives those in flight --grace seconds, default 10, leaves the\n"
    "rest stored for the next relay, and exits 0), or with --until-empty until nothing is left\n"
    "but dead letters (exit 0 when there are none, 1 when there are). A retryable failure\n"
    "waits the next step of --retry-schedule (the last step repeats); an event still failing\n"
    "--max-age after it was stored, or failing for good, becomes a dead letter kept in the\n"
    "store. --report writes {\"id\",\"target\",\"status\":\"delivered\"|\"retry\"|\"dead\",\n"
    "\"attempts\",\"error\"} per outcome. A postgresql:// store may have relays on many\n"
    "machines at once; a relay that dies has its events taken over after --claim-lease\n"
    "(default 5m: keep it above --deadline). At most --max-in-flight events are out at once,\n"
    "and of one target at most --max-in-flight-per-target (default half of --max-in-flight;\n"
    "0: no bound), so a target whose deliveries hang holds only that share, and the others\n"
    "go on. --breaker N sets a target aside after N failed deliveries in a row: its events\n"
    "stay stored, one probe goes after --breaker-open-for (doubling to 5m while it fails), and\n"
    "inspect shows the breaker (default 0: off). --metrics serves GET /metrics in Prometheus'\n"
    "text format: the relay's counters and each target's pending events, dead letters and\n"
    "breaker. Delivery options (as for send):\n";

// "5s", "5m", "2h", "3d" into seconds, at most 36500d (Outbox's longest_retry_wait: later
// times would overflow the clock); false when it is not that.
bool parse_duration(std::string_view text, std::chrono::seconds& out) {
    if (text.size() < 2) return false;
    long long n = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size() - 1, n);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size() - 1 || n <= 0) return false;
    long long unit = 0;
    switch (text.back()) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        default:
            return false;
    }
    if (n > longest_retry_wait.count() / unit) return false;
    out = std::chrono::seconds(n * unit);
    return true;
}

}  // namespace

int run_relay(int argc, char** argv) {
    std::string store_path, report_path, metrics_address;
    bool until_empty = false, print_stats = false;
    long long grace_seconds = 10;
    std::vector<std::chrono::seconds> schedule = default_retry_schedule();
    std::chrono::seconds max_age = std::chrono::hours(72);
    std::chrono::seconds claim_lease{300};
    std::size_t max_in_flight = OutboxConfig{}.max_in_flight;
    std::optional<std::size_t> per_target;  // half of max_in_flight
    CircuitBreakerPolicy breaker;
    breaker.failures_to_open = 0;  // off unless asked for, as in OutboxConfig
    bool open_for_given = false;
    DeliveryOptions delivery;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        std::string error;
        if (take_delivery_option("relay", argc, argv, i, delivery, error)) {
            if (!error.empty()) return usage_error(error);
            continue;
        }
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        std::string v;
        if (a == "-h" || a == "--help") {
            std::cout << relay_usage << delivery_usage;
            return 0;
        } else if (a == "--store") {
            if (!value(store_path) || store_path.empty())
                return usage_error("relay: --store needs a file or a postgresql:// URI");
        } else if (a == "--report") {
            if (!value(report_path)) return usage_error("relay: --report needs a file name");
        } else if (a == "--metrics") {
            if (!value(metrics_address))
                return usage_error("relay: --metrics needs HOST:PORT, such as 127.0.0.1:9464");
        } else if (a == "--until-empty") {
            until_empty = true;
        } else if (a == "--stats") {
            print_stats = true;
        } else if (a == "--grace") {
            long long n = -1;
            if (!value(v) ||
                std::from_chars(v.data(), v.data() + v.size(), n).ptr != v.data() + v.size() ||
                n < 0 || n > 3600)
                return usage_error("relay: --grace must be 0 to 3600 seconds");
            grace_seconds = n;
        } else if (a == "--retry-schedule") {
            schedule.clear();
            if (!value(v))
                return usage_error("relay: --retry-schedule needs steps such as 5s,5m,2h");
            std::string_view rest = v;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                std::chrono::seconds step;
                if (!parse_duration(rest.substr(0, comma), step))
                    return usage_error(
                        "relay: --retry-schedule: \"" + std::string(rest.substr(0, comma)) +
                        "\" is not a duration such as 5s, 5m, 2h or 3d (at most 36500d)");
                schedule.push_back(step);
                rest =
                    comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            }
            if (schedule.empty()) return usage_error("relay: --retry-schedule is empty");
        } else if (a == "--max-age") {
            if (!value(v) || !parse_duration(v, max_age))
                return usage_error(
                    "relay: --max-age needs a duration such as 72h or 3d (at most 36500d)");
        } else if (a == "--breaker") {
            unsigned n = 0;
            if (!value(v) ||
                std::from_chars(v.data(), v.data() + v.size(), n).ptr != v.data() + v.size() ||
                v.empty() || n > 1000)
                return usage_error("relay: --breaker must be 0 (off) to 1000 failures");
            breaker.failures_to_open = n;
        } else if (a == "--breaker-open-for") {
            std::chrono::seconds open_for;
            if (!value(v) || !parse_duration(v, open_for))
                return usage_error("relay: --breaker-open-for needs a duration such as 30s or 5m");
            breaker.open_for = open_for;
            open_for_given = true;
            breaker.max_open_for =
                std::max<std::chrono::milliseconds>(breaker.max_open_for, open_for);
        } else if (a == "--claim-lease") {
            if (!value(v) || !parse_duration(v, claim_lease) || claim_lease.count() < 1)
                return usage_error("relay: --claim-lease needs a duration such as 90s or 5m");
        } else if (a == "--max-in-flight" || a == "--max-in-flight-per-target") {
            const bool whole = a == "--max-in-flight";
            unsigned long long n = 0;
            const auto parsed = value(v)
                                    ? std::from_chars(v.data(), v.data() + v.size(), n)
                                    : std::from_chars_result{v.data(), std::errc::invalid_argument};
            if (v.empty() || parsed.ec != std::errc() || parsed.ptr != v.data() + v.size() ||
                n > 1000000 || (whole && n == 0))
                return usage_error("relay: " + std::string(a) + " must be " +
                                   (whole ? "1" : "0 (no bound)") + " to 1000000");
            if (whole)
                max_in_flight = static_cast<std::size_t>(n);
            else
                per_target = static_cast<std::size_t>(n);
        } else {
            return usage_error("relay: unknown option " + std::string(a) + "\n" +
                               std::string(relay_usage) + std::string(delivery_usage));
        }
    }
    if (store_path.empty())
        return usage_error("relay: missing --store FILE|URI\n" + std::string(relay_usage));
    if (breaker.failures_to_open == 0 && open_for_given)
        return usage_error("relay: --breaker-open-for needs --breaker N (breakers are off)");
    if (claim_lease != std::chrono::seconds(300) && !is_postgresql(store_path))
        return usage_error(
            "relay: --claim-lease is for a postgresql:// store (an SQLite store "
            "has one relay)");
    if (auto why = check_delivery_options("relay", delivery, true, true); !why.empty())
        return usage_error(why);

    ReportFile report;
    if (!report_path.empty()) {
        if (!is_postgresql(store_path) && report_is_store_file(report_path, store_path))
            return usage_error("relay: the report " + report_path +
                               " is the store's file: writing it would destroy the events");
        if (std::string why; !report.open(report_path, why))
            return usage_error("relay: cannot write the report " + report_path + ": " + why);
    }
    std::string error;
    OutboxStorePtr store = open_store(store_path, error, true, claim_lease);
    if (!store) return usage_error("relay: " + error);

    const Logger logger = env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug) : Logger{};
    asio::io_context io;
    std::optional<Delivery> destinations;
    try {
        destinations.emplace(io.get_executor(), delivery, logger);
    } catch (const std::invalid_argument& e) {
        return usage_error(std::string("relay: ") + e.what());
    }
    // The destinations' own retries are short: the outbox retries on its schedule.
    RetryPolicy retry;
    retry.max_attempts = delivery.max_attempts != 0 ? delivery.max_attempts : 3;
    retry.message_deadline =
        std::chrono::seconds(delivery.deadline_seconds != 0 ? delivery.deadline_seconds : 60);
    retry.max_delay = std::chrono::seconds(5);

    OutboxConfig config;
    config.store = std::move(store);
    config.make_destination = [&](const std::string& target) {
        return destinations->make(target, retry);
    };
    config.retry_schedule = schedule;
    config.max_age = max_age;
    config.max_in_flight = max_in_flight;
    config.max_in_flight_per_target = per_target;
    config.breaker = breaker;
    config.logger = logger.sink ? logger : stderr_logger(LogLevel::warning);
    config.on_settled = [&](const EventOutcome& o) {
        if (!report.is_open()) return;
        std::string line = "{\"id\":\"" + std::to_string(o.id) + "\",\"target\":";
        append_json_string(line, o.target);
        line += ",\"status\":";
        line += o.kind == EventOutcome::Kind::delivered ? "\"delivered\""
                : o.kind == EventOutcome::Kind::retry   ? "\"retry\""
                                                        : "\"dead\"";
        line += ",\"attempts\":" + std::to_string(o.attempts) + ",\"error\":";
        if (o.error.empty())
            line += "null";
        else
            append_json_string(line, o.error);
        line += "}\n";
        report.write_line(line);
    };
    std::optional<Outbox> outbox;
    try {
        outbox.emplace(io.get_executor(), std::move(config));
    } catch (const std::exception& e) {
        return usage_error(std::string("relay: ") + e.what());
    }

    // Summaries read the whole store: a scraper asking every second gets one at most every 5 s.
    std::optional<MetricsServer> metrics;
    std::vector<TargetSummary> summaries;
    std::optional<std::chrono::steady_clock::time_point> summarized_at;
    bool summarizing = false;  // one summary at a time; scrapes meanwhile wait for it
    std::vector<std::function<void()>> after_summary;
    if (!metrics_address.empty()) try {
            metrics.emplace(io, metrics_address, [&](std::function<void(std::string)> done) {
                auto page = [&, done](const std::vector<TargetSummary>& targets) {
                    PrometheusText text;
                    add_outbox_metrics(text, {}, outbox->stats(), targets);
                    done(text.text());
                };
                const auto now = std::chrono::steady_clock::now();
                if (summarized_at && now - *summarized_at < std::chrono::seconds(5))
                    return page(summaries);
                after_summary.push_back([&, page] { page(summaries); });
                if (summarizing) return;
                summarizing = true;
                outbox->async_summarize(
                    [&, now](error_code ec, std::vector<TargetSummary> targets) {
                        summarizing = false;
                        if (!ec) {
                            summaries = std::move(targets);
                            summarized_at = now;
                        }
                        for (auto& answer : std::exchange(after_summary, {})) answer();
                    });
            });
        } catch (const std::exception& e) {
            return usage_error(std::string("relay: ") + e.what());
        }

    StopSignals signals(io);
    std::uint64_t dead_left = 0;
    error_code summary_error;
    bool closing = false;
    asio::steady_timer report_flusher(io);
    std::function<void()> close_outbox = [&] {
        if (closing) return;
        closing = true;
        if (metrics) metrics->stop();
        outbox->async_close(std::chrono::seconds(grace_seconds), [&](error_code) {
            signals.cancel();
            report_flusher.cancel();
            destinations->close();
        });
    };
    // A relay runs for days: its report reaches the file within a second of each outcome, so
    // one killed keeps its lines (the store has forgotten the delivered events), and a report
    // that cannot be written stops it at once rather than at its end.
    std::function<void()> flush_report = [&] {
        report_flusher.expires_after(std::chrono::seconds(1));
        report_flusher.async_wait([&](error_code ec) {
            if (ec || closing) return;
            if (!report.flush()) {
                std::fprintf(stderr, "outbox: relay: %s; stopping\n", report.error().c_str());
                return close_outbox();
            }
            flush_report();
        });
    };
    if (report.is_open()) flush_report();
    signals.on_signal([&](int sig) {
        std::fprintf(stderr,
                     "%soutbox: relay: %s: no new deliveries; those in flight get up to "
                     "%lld s\n",
                     isatty(STDERR_FILENO) ? "\r\033[K" : "", signal_name(sig), grace_seconds);
        close_outbox();
    });

    // --until-empty: every 200 ms ask whether anything is pending (cheap); once nothing is,
    // count the dead letters left and stop.
    asio::steady_timer watch(io);
    std::function<void()> look = [&] {
        watch.expires_after(std::chrono::milliseconds(200));
        watch.async_wait([&](error_code ec) {
            if (ec || closing) return;
            outbox->async_has_pending([&](error_code pec, bool pending) {
                if (closing) return;
                if (pec || pending) return look();
                outbox->async_summarize([&](error_code sec, std::vector<TargetSummary> targets) {
                    if (sec) summary_error = sec;  // dead letters unknown: not a success
                    for (const auto& t : targets) dead_left += t.dead;
                    close_outbox();
                });
            });
        });
    };
    if (until_empty) look();

    const bool progress = isatty(STDERR_FILENO) != 0;
    asio::steady_timer ticker(io);
    const auto started = std::chrono::steady_clock::now();
    std::function<void()> tick = [&] {
        ticker.expires_after(std::chrono::milliseconds(200));
        ticker.async_wait([&](error_code ec) {
            if (ec || closing) return;
            const OutboxStats s = outbox->stats();
            const double seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            std::fprintf(
                stderr,
                "\rdelivered %llu, retrying %llu, in flight %llu, dead %llu, %.0f events/s   ",
                static_cast<unsigned long long>(s.delivered),
                static_cast<unsigned long long>(s.retried),
                static_cast<unsigned long long>(s.in_flight),
                static_cast<unsigned long long>(s.dead),
                seconds > 0 ? static_cast<double>(s.delivered) / seconds : 0.0);
            tick();
        });
    };
    if (progress) tick();

    io.run();  // returns once the outbox is closed and nothing else is left
    const OutboxStats stats = outbox->stats();
    outbox.reset();
    io.restart();
    io.run();  // the destinations are released on their executor
    const bool report_ok = report.close();
    if (progress) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "delivered %llu, retried %llu, dead %llu\n",
                 static_cast<unsigned long long>(stats.delivered),
                 static_cast<unsigned long long>(stats.retried),
                 static_cast<unsigned long long>(stats.dead));
    if (print_stats)
        std::fprintf(stderr, "commits %llu, in flight at the end %llu\n",
                     static_cast<unsigned long long>(stats.commits),
                     static_cast<unsigned long long>(stats.in_flight));
    if (!report_ok) {
        std::fprintf(stderr, "outbox: relay: %s\n", report.error().c_str());
        return 2;
    }
    if (signals.signal() != 0) return 0;  // a requested stop: what is left stays stored
    if (until_empty && summary_error) {
        std::fprintf(stderr, "outbox: relay: cannot count the dead letters left: %s\n",
                     summary_error.message().c_str());
        return 1;
    }
    if (until_empty && dead_left > 0) {
        std::fprintf(stderr,
                     "outbox: relay: %llu dead letters are left (outbox inspect shows them)\n",
                     static_cast<unsigned long long>(dead_left));
        return 1;
    }
    return 0;
}

}  // namespace outbox::cli
