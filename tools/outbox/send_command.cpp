#include "send_command.hpp"

#include "cli_io.hpp"
#include "delivery.hpp"
#include "json_lines.hpp"
#include "line_reader.hpp"
#include "report_file.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/detail/aws_environment.hpp>
#include <outbox/detail/json_writer.hpp>
#include <outbox/sqs_destination.hpp>
#if OUTBOX_WITH_KAFKA
#include <outbox/kafka_destination.hpp>
#endif

#include <simdjson.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

namespace outbox::cli {
namespace {

namespace asio = boost::asio;

constexpr std::string_view usage =
    "usage: outbox send --to QUEUE_URL [--endpoint URL] [--region R] [--objects]\n"
    "                   [--report FILE] [--max-attempts N] [--deadline SECONDS]\n"
    "                   [--grace SECONDS] [--allow-missing-md5]\n"
    "                   [--stage s3://BUCKET/PREFIX [--s3-endpoint URL] [--s3-region R]\n"
    "                    [--stage-always | --stage-threshold BYTES] [--url-expires SECONDS]]\n"
    "                   [--envelope raw|cloudevents] [--stats]\n"
    "                   [FILE|-]\n"
    "       outbox send --to kafka://HOST:PORT[,HOST:PORT...]/TOPIC\n"
    "                   [--sasl-user U --sasl-password-file F] [--tls-ca FILE] [--plaintext]\n"
    "                   [same input, report and staging options]\n"
    "Sends JSON Lines (from FILE or standard input): each line is one message body, or with\n"
    "--objects an object {\"body\": \"...\", \"group_id\": \"...\", \"dedup_id\": \"...\",\n"
    "\"attributes\": {\"name\": \"text\" | {\"type\": \"Number\", \"value\": \"42\"}}, \"delay\": "
    "SECONDS}.\n"
    "QUEUE_URL: https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or a local emulator's URL.\n"
    "Kafka: SASL PLAIN over TLS with --sasl-user (the password is read from the file, never\n"
    "from the command line); TLS without SASL otherwise; --plaintext drops TLS (local\n"
    "brokers). --tls-ca trusts that CA instead of the system's. Group ids become no key:\n"
    "partitions are balanced by bytes.\n"
    "--endpoint sends the requests elsewhere (an emulator, a VPC endpoint; default\n"
    "AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, the profile's endpoint_url). The region comes\n"
    "from --region, the queue URL, AWS_REGION, AWS_DEFAULT_REGION, the profile, else us-east-1.\n"
    "Credentials come from the default chain (environment, web identity, profiles,\n"
    "container, instance metadata). --report FILE writes one JSON line per input line:\n"
    "{\"index\", \"status\": \"delivered\"|\"failed\", \"message_id\", \"attempts\", \"error\"},\n"
    "plus \"partition\" and \"offset\" for Kafka and \"staged_url\" for a staged message.\n"
    "--deadline bounds each message's time from acceptance to its outcome, queue lookup and\n"
    "requests included (default 300). On SIGINT or SIGTERM no more input is read; messages in\n"
    "flight get --grace seconds (default 10) to finish, then fail; every one gets its report\n"
    "line. The report is created with mode 0600 (it may hold pre-signed URLs).\n"
    "--allow-missing-md5 accepts SQS replies without MD5 digests (some emulators omit them).\n"
    "--stage uploads bodies over the queue's limit (every body with --stage-always) to S3\n"
    "and sends {\"status\":\"success\",\"type\":\"s3_payload\",\"url\":...,\"expires_in\":...}\n"
    "instead (over BYTES with --stage-threshold); --url-expires sets the URL's lifetime (default "
    "600, 1 to 604800). --s3-endpoint\n"
    "addresses a local S3 path-style. --envelope cloudevents wraps each message in a\n"
    "CloudEvents 1.0 JSON event (source \"outbox\", type \"outbox.message\").\n"
    "--stats prints the destination's counters and latency percentiles at the end.\n"
    "Exit status: 0 all delivered, 1 any failed, 2 usage, input or report error (what was\n"
    "read is still delivered or failed), 128+N stopped by signal N. OUTBOX_DEBUG=1 logs.\n";

std::string describe(const boost::system::error_code& ec, const Receipt& r) {
    std::string text = ec.message();
    if (!r.diagnostics.code.empty() &&
        r.diagnostics.message.find(r.diagnostics.code) == std::string::npos)
        text += " (" + r.diagnostics.code + ")";
    if (!r.diagnostics.message.empty()) text += ": " + r.diagnostics.message;
    return text;
}

// Report lines and the final counts; only touched on the I/O thread.
struct Outcome {
    ReportFile report;
    std::atomic<bool> report_failed{false};  // read by the input loop
    std::uint64_t delivered = 0, failed = 0;

    std::string first_failure;

    void record(std::uint64_t index, const boost::system::error_code& ec, const Receipt& r) {
        (ec ? failed : delivered) += 1;
        if (ec && first_failure.empty()) first_failure = describe(ec, r);
        if (!report.is_open()) return;
        std::string line = "{\"index\":" + std::to_string(index) + ",\"status\":";
        line += ec ? "\"failed\"" : "\"delivered\"";
        line += ",\"message_id\":";
        if (ec || r.message_id.empty())  // Kafka has partition and offset instead
            line += "null";
        else
            detail::append_json_string(line, r.message_id);
        line += ",\"attempts\":" + std::to_string(r.attempts);
        if (!ec && r.partition >= 0)
            line += ",\"partition\":" + std::to_string(r.partition) +
                    ",\"offset\":" + std::to_string(r.offset);
        if (!r.staged_url.empty()) {
            line += ",\"staged_url\":";
            detail::append_json_string(line, r.staged_url);
        }
        line += ",\"error\":";
        if (!ec) {
            line += "null";
        } else {
            detail::append_json_string(line, describe(ec, r));
        }
        line += "}\n";
        report.write_line(line);
        if (report.failed()) report_failed = true;
    }
};

const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace

int run_send(int argc, char** argv) {
    std::string to, report_path, input = "-";
    bool objects = false, input_given = false, print_stats = false;
    long long grace_seconds = 10;
    DeliveryOptions delivery;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        std::string error;
        if (take_delivery_option("send", argc, argv, i, delivery, error)) {
            if (!error.empty()) return usage_error(error);
            continue;
        }
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "--to") {
            if (!value(to)) return usage_error("send: --to needs a queue URL");
        } else if (a == "--report") {
            if (!value(report_path)) return usage_error("send: --report needs a file name");
        } else if (a == "--stats") {
            print_stats = true;
        } else if (a == "--grace") {
            std::string v;
            char* end = nullptr;
            if (!value(v) || v.empty() || (grace_seconds = std::strtoll(v.c_str(), &end, 10)) < 0 ||
                grace_seconds > 3600 || *end != '\0')
                return usage_error("send: --grace must be 0 to 3600 seconds");
        } else if (a == "--objects") {
            objects = true;
        } else if (a.size() > 1 && a.front() == '-') {
            return usage_error("send: unknown option " + std::string(a) + "\n" +
                               std::string(usage));
        } else if (!input_given) {
            input = a;
            input_given = true;
        } else {
            return usage_error("send: more than one input file");
        }
    }
    if (to.empty()) return usage_error("send: missing --to QUEUE_URL\n" + std::string(usage));
    const bool to_kafka = is_kafka_target(to);
    if (auto why = check_delivery_options("send", delivery, !to_kafka, to_kafka); !why.empty())
        return usage_error(why);

    const Logger logger = env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug) : Logger{};
    asio::io_context io;
    RetryPolicy retry;
    if (delivery.max_attempts != 0) retry.max_attempts = delivery.max_attempts;
    if (delivery.deadline_seconds != 0)
        retry.message_deadline = std::chrono::seconds(delivery.deadline_seconds);
    std::optional<Delivery> destinations;
    std::unique_ptr<Destination> destination;
    try {
        destinations.emplace(io.get_executor(), delivery, logger);
        destination = destinations->make(to, retry);
    } catch (const std::invalid_argument& e) {
        return usage_error(std::string("send: ") + e.what());
    }

    LineReader reader;
    if (std::string why; !reader.open(input, why))
        return usage_error("send: cannot read " + (input == "-" ? "standard input" : input) + ": " +
                           why);
    Outcome outcome;
    if (!report_path.empty()) {
        // Refused before the report is opened, which would truncate the input.
        if (same_file(reader.fd(), report_path))
            return usage_error("send: the report " + report_path + " is the input file");
        if (std::string why; !outcome.report.open(report_path, why))
            return usage_error("send: cannot write the report " + report_path + ": " + why);
    }

    // A signal stops the input loop: the handler runs on the I/O thread and wakes a read that
    // waits for input through this pipe.
    int wake[2] = {-1, -1};
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return usage_error(std::string("send: pipe: ") + std::strerror(errno));
    struct PipeCloser {
        int* fds;
        ~PipeCloser() {
            ::close(fds[0]);
            ::close(fds[1]);
        }
    } pipe_closer{wake};
    reader.stop_on(wake[0]);

    // The I/O thread runs the destination; this thread reads input and waits for room.
    auto work = asio::make_work_guard(io);
    std::mutex mutex;
    std::condition_variable room;
    std::size_t outstanding = 0, outstanding_bytes = 0;
    // Read-ahead: at most this many messages, or bytes, accepted and not yet completed.
    constexpr std::size_t window = 8192;
    constexpr std::size_t window_bytes = 32 * 1024 * 1024;
    std::atomic<std::uint64_t> submitted{0};
    int stop_signal = 0;  // under mutex

    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::function<void()> wait_for_signal = [&] {
        signals.async_wait([&](boost::system::error_code ec, int sig) {
            if (ec) return;
            bool first = false;
            {
                std::lock_guard lock(mutex);
                first = stop_signal == 0;
                if (first) stop_signal = sig;
            }
            if (first) {
                const char byte = 1;
                [[maybe_unused]] const auto n = ::write(wake[1], &byte, 1);
                room.notify_all();
            }
            wait_for_signal();  // later signals: already stopping
        });
    };
    wait_for_signal();
    std::thread io_thread([&] { io.run(); });

    const bool progress = isatty(STDERR_FILENO) != 0;
    asio::steady_timer ticker(io);
    std::function<void()> tick = [&] {
        ticker.expires_after(std::chrono::milliseconds(200));
        ticker.async_wait([&](boost::system::error_code ec) {
            if (ec || !destination) return;
            std::fprintf(stderr, "\rsent %llu: delivered %llu, failed %llu, in flight %llu   ",
                         static_cast<unsigned long long>(submitted.load()),
                         static_cast<unsigned long long>(outcome.delivered),
                         static_cast<unsigned long long>(outcome.failed),
                         static_cast<unsigned long long>(destination->stats().in_flight));
            tick();
        });
    };
    if (progress) asio::post(io, tick);

    simdjson::dom::parser parser;
    std::string_view line;
    std::uint64_t index = 0;
    std::string input_error;
    bool stopped_reading = false;
    for (;; ++index) {
        const LineReader::Next next = reader.next(line);
        if (next == LineReader::Next::end) break;
        if (next == LineReader::Next::error) {
            input_error = "cannot read " + (input == "-" ? std::string("standard input") : input) +
                          " after " + std::to_string(index) + " lines: " + reader.error();
            break;
        }
        if (next == LineReader::Next::stopped || outcome.report_failed) {
            stopped_reading = true;
            break;
        }
        if (line.find_first_not_of(" \t") == std::string_view::npos)
            continue;  // blank lines carry nothing
        Message message;
        std::string why;
        if (objects && !parse_object_line(parser, line, message, why)) {
            asio::post(io, [&outcome, index, why] {
                Receipt r;
                r.diagnostics.message = "line " + std::to_string(index + 1) + ": " + why;
                outcome.record(index, Errc::invalid_message, r);
            });
            continue;
        }
        if (!objects) message.body.assign(line);
        const std::size_t bytes = message.body.size();
        {
            std::unique_lock lock(mutex);
            room.wait(lock, [&] {
                return stop_signal != 0 || outstanding == 0 ||
                       (outstanding < window && outstanding_bytes + bytes <= window_bytes);
            });
            if (stop_signal != 0) {
                stopped_reading = true;
                break;
            }
            ++outstanding;
            outstanding_bytes += bytes;
        }
        ++submitted;
        destination->async_send(std::move(message),
                                [&, index, bytes](boost::system::error_code ec, Receipt r) {
                                    outcome.record(index, ec, r);
                                    std::lock_guard lock(mutex);
                                    --outstanding;
                                    outstanding_bytes -= bytes;
                                    room.notify_all();
                                });
    }

    // What was read is delivered or failed, and reported, before the program ends: all of it
    // normally; within the grace period after a signal.
    const auto close_destination = [&](std::chrono::milliseconds deadline) {
        std::promise<void> closed;
        destination->async_close(deadline, [&](boost::system::error_code) { closed.set_value(); });
        closed.get_future().wait();
    };
    int signal_seen = 0;
    {
        std::unique_lock lock(mutex);
        room.wait(lock, [&] { return outstanding == 0 || stop_signal != 0; });
        signal_seen = stop_signal;
    }
    if (signal_seen != 0) {
        std::fprintf(stderr,
                     "%soutbox: send: %s: no more input is read; %llu messages in flight get up "
                     "to %lld s to finish\n",
                     progress ? "\r\033[K" : "", signal_name(signal_seen),
                     static_cast<unsigned long long>(destination->stats().in_flight),
                     grace_seconds);
        close_destination(std::chrono::seconds(grace_seconds));
        std::unique_lock lock(mutex);
        room.wait(lock, [&] { return outstanding == 0; });
    } else {
        close_destination(std::chrono::seconds(30));
    }
    destinations->close();  // the stager's idle connections would hold the event loop
    const DestinationStats stats = destination->stats();
    // The progress ticker reads the destination on the I/O thread: reset it there, and let
    // the report lines posted before this finish first.
    std::promise<void> released;
    asio::post(io, [&] {
        ticker.cancel();
        signals.cancel();
        destination.reset();
        released.set_value();
    });
    released.get_future().wait();
    work.reset();
    io_thread.join();
    const bool report_ok = outcome.report.close();
    if (progress) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "delivered %llu, failed %llu\n",
                 static_cast<unsigned long long>(outcome.delivered),
                 static_cast<unsigned long long>(outcome.failed));
    if (!outcome.first_failure.empty())
        std::fprintf(stderr, "first failure: %s\n", outcome.first_failure.c_str());
    if (print_stats) std::fputs(describe(stats).c_str(), stderr);
    // Every reason the run is incomplete is said, whichever decides the exit status: a report
    // that is missing lines must never pass for a complete one.
    if (!input_error.empty()) std::fprintf(stderr, "outbox: send: %s\n", input_error.c_str());
    if (!report_ok)
        std::fprintf(stderr, "outbox: send: %s%s\n", outcome.report.error().c_str(),
                     stopped_reading ? "; no more input was read after it" : "");
    if (signal_seen != 0) {
        std::fprintf(stderr, "outbox: send: stopped by %s after %llu input lines\n",
                     signal_name(signal_seen), static_cast<unsigned long long>(index));
        return 128 + signal_seen;
    }
    if (!input_error.empty() || !report_ok) return 2;
    return outcome.failed == 0 ? 0 : 1;
}

}  // namespace outbox::cli
