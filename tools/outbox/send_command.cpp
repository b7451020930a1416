#include "send_command.hpp"

#include "cli_io.hpp"
#include "delivery.hpp"
#include "json_lines.hpp"
#include "line_reader.hpp"
#include "read_ahead_window.hpp"
#include "report_file.hpp"
#include "send_options.hpp"

#include <outbox/aws_environment.hpp>
#include <outbox/credentials_providers.hpp>
#include <outbox/json_string.hpp>
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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

namespace outbox::cli {
namespace {

namespace asio = boost::asio;

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
            append_json_string(line, r.message_id);
        line += ",\"attempts\":" + std::to_string(r.attempts);
        if (!ec && r.partition >= 0)
            line += ",\"partition\":" + std::to_string(r.partition) +
                    ",\"offset\":" + std::to_string(r.offset);
        if (!r.staged_url.empty()) {
            line += ",\"staged_url\":";
            append_json_string(line, r.staged_url);
        }
        line += ",\"error\":";
        if (!ec) {
            line += "null";
        } else {
            append_json_string(line, describe(ec, r));
        }
        line += "}\n";
        report.write_line(line);
        if (report.failed()) report_failed = true;
    }
};

const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

// One run: the calling thread reads input into batches of lines and waits for room in the
// read-ahead window; the I/O thread makes the lines into messages and runs the destination;
// at the end the calling thread closes and reports.
class SendRun {
  public:
    explicit SendRun(const SendOptions& options) : o_(options) {}
    SendRun(const SendRun&) = delete;
    SendRun& operator=(const SendRun&) = delete;
    ~SendRun() {
        for (int fd : wake_)
            if (fd >= 0) ::close(fd);
    }

    int run() {
        if (const int status = open(); status != 0) return status;
        start_io();
        read_and_send();
        finish();
        return summarize();
    }

  private:
    // Construction: the destination, the input, the report and the pipe a signal wakes the
    // input with. Returns 0, or the exit status of a usage error.
    int open() {
        const Logger logger = env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug) : Logger{};
        RetryPolicy retry;
        if (o_.delivery.max_attempts != 0) retry.max_attempts = o_.delivery.max_attempts;
        if (o_.delivery.deadline_seconds != 0)
            retry.message_deadline = std::chrono::seconds(o_.delivery.deadline_seconds);
        try {
            destinations_.emplace(io_.get_executor(), o_.delivery, logger);
            destination_ = destinations_->make(o_.to, retry);
#if OUTBOX_WITH_KAFKA
            send_from_reader_ = dynamic_cast<KafkaDestination*>(destination_.get()) != nullptr;
#endif
        } catch (const std::invalid_argument& e) {
            return usage_error(std::string("send: ") + e.what());
        }
        if (std::string why; !reader_.open(o_.input, why))
            return usage_error("send: cannot read " + input_name() + ": " + why);
        if (!o_.report_path.empty()) {
            // Refused before the report is opened, which would truncate the input.
            if (same_file(reader_.fd(), o_.report_path))
                return usage_error("send: the report " + o_.report_path + " is the input file");
            if (std::string why; !outcome_.report.open(o_.report_path, why))
                return usage_error("send: cannot write the report " + o_.report_path + ": " + why);
        }
        if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
            return usage_error(std::string("send: pipe: ") + std::strerror(errno));
        reader_.stop_on(wake_[0]);
        return 0;
    }

    std::string input_name() const {
        return o_.input == "-" ? std::string("standard input") : o_.input;
    }

    // A signal stops the input loop: the handler runs on the I/O thread and wakes a read that
    // waits for input through the pipe. Later signals: already stopping.
    void wait_for_signal() {
        signals_->async_wait([this](boost::system::error_code ec, int sig) {
            if (ec) return;
            bool first = false;
            {
                std::lock_guard lock(mutex_);
                first = stop_signal_ == 0;
                if (first) stop_signal_ = sig;
            }
            if (first) {
                const char byte = 1;
                [[maybe_unused]] const auto n = ::write(wake_[1], &byte, 1);
                room_.notify_all();
            }
            wait_for_signal();
        });
    }

    void tick() {
        ticker_.expires_after(std::chrono::milliseconds(200));
        ticker_.async_wait([this](boost::system::error_code ec) {
            if (ec || !destination_) return;
            std::fprintf(stderr, "\rsent %llu: delivered %llu, failed %llu, in flight %llu   ",
                         static_cast<unsigned long long>(submitted_.load()),
                         static_cast<unsigned long long>(outcome_.delivered),
                         static_cast<unsigned long long>(outcome_.failed),
                         static_cast<unsigned long long>(destination_->stats().in_flight));
            tick();
        });
    }

    void start_io() {
        signals_.emplace(io_, SIGINT, SIGTERM);
        wait_for_signal();
        io_thread_ = std::thread([this] { io_.run(); });
        if (progress_) asio::post(io_, [this] { tick(); });
    }

    // Lines read and not yet messages. The reader copies lines into a batch and the I/O
    // thread makes them into messages and sends them: each body is then allocated and freed
    // on the one thread (a body allocated here and freed there cost both threads malloc's
    // slow path and its lock), and the threads meet once per batch instead of per message.
    // Kafka is the exception: its async_send does its work (librdkafka's produce) on the
    // calling thread, so the reader sends each line itself, sharing the work with the I/O
    // thread instead of adding to it (batching cost 14% more instructions there).
    struct LineBatch {
        struct Line {
            std::uint64_t index;  // in the input, from 0
            std::size_t offset, size;
        };
        std::string bytes;
        std::vector<Line> lines;

        bool full() const { return lines.size() >= 256 || bytes.size() >= 256 * 1024; }
        std::string_view text(const Line& line) const {
            return std::string_view(bytes).substr(line.offset, line.size);
        }
    };

    // The send loop: one message per non-blank line, handed on in batches once there is room
    // for them, and before any read that may wait for input.
    void read_and_send() {
        LineBatch batch;
        std::string_view line;
        for (;; ++index_) {
            LineReader::Next next = reader_.next_buffered(line);
            if (next == LineReader::Next::must_read) {
                if (!hand_on(batch)) break;
                next = reader_.next(line);
            }
            if (next == LineReader::Next::end) break;
            if (next == LineReader::Next::error) {
                input_error_ = "cannot read " + input_name() + " after " + std::to_string(index_) +
                               " lines: " + reader_.error();
                break;
            }
            if (next == LineReader::Next::stopped || outcome_.report_failed) {
                stopped_reading_ = true;
                if (!batch.lines.empty()) index_ = batch.lines.front().index;  // not handed on
                break;
            }
            if (line.find_first_not_of(" \t") == std::string_view::npos)
                continue;  // blank lines carry nothing
            if (send_from_reader_) {
                if (!wait_for_room(1, line.size())) {
                    stopped_reading_ = true;
                    break;
                }
                ++submitted_;
                send_line(line, index_);
                continue;
            }
            batch.lines.push_back({index_, batch.bytes.size(), line.size()});
            batch.bytes.append(line);
            if (batch.full() && !hand_on(batch)) break;
        }
        if (!stopped_reading_) hand_on(batch);
    }

    // Waits for room for the batch and posts it to the I/O thread. False, the batch dropped
    // and `index_` set back to its first line, when a signal came first.
    bool hand_on(LineBatch& batch) {
        if (batch.lines.empty()) return true;
        if (!wait_for_room(batch.lines.size(), batch.bytes.size())) {
            index_ = batch.lines.front().index;  // what the summary says was read
            stopped_reading_ = true;
            return false;
        }
        submitted_ += batch.lines.size();
        asio::post(io_, [this, taken = std::move(batch)]() mutable {
            send_batch(taken);
            give_back(std::move(taken));
        });
        batch = take_spare();
        return true;
    }

    // Emptied batches come back to the reader with their memory: a batch's bytes, fresh each
    // time, were above malloc's mmap threshold and cost a mapping and its page faults.
    LineBatch take_spare() {
        std::lock_guard lock(mutex_);
        if (spare_batches_.empty()) return {};
        LineBatch batch = std::move(spare_batches_.back());
        spare_batches_.pop_back();
        return batch;
    }
    void give_back(LineBatch&& batch) {
        if (batch.bytes.capacity() > 4 * 1024 * 1024) return;  // a long line's: not kept
        batch.bytes.clear();
        batch.lines.clear();
        std::lock_guard lock(mutex_);
        if (spare_batches_.size() < 4) spare_batches_.push_back(std::move(batch));
    }

    // False when a signal came first.
    bool wait_for_room(std::size_t messages, std::size_t bytes) {
        std::unique_lock lock(mutex_);
        if (!window_.has_room(messages, bytes) && stop_signal_ == 0) {
            window_.start_waiting(messages, bytes);
            room_.wait(lock, [&] { return stop_signal_ != 0 || window_.reader_may_go(); });
            window_.stop_waiting();
        }
        if (stop_signal_ != 0) return false;
        window_.add(messages, bytes);
        return true;
    }

    // On the I/O thread.
    void send_batch(const LineBatch& batch) {
        for (const LineBatch::Line& line : batch.lines) send_line(batch.text(line), line.index);
    }

    // Every line ends in a completion that gives back its room: delivered, failed by the
    // destination, or failed here, reported on the I/O thread (a line that is not a message
    // object, or that memory ran out making). An exception from async_send itself goes on: it
    // may come after the destination took the handler, so it cannot be counted here.
    void send_line(std::string_view text, std::uint64_t index) {
        Message message;
        std::string why;
        boost::system::error_code ec;
        try {
            if (!o_.objects)
                message.body = std::string(text);  // sized once, no assign path
            else if (!parse_object_line(parser_, text, message, why))
                ec = Errc::invalid_message;
        } catch (const std::bad_alloc& e) {
            ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
            why = e.what();
        }
        if (!ec) return send(std::move(message), index, text.size());
        asio::post(io_, [this, index, bytes = text.size(), ec, why = std::move(why)] {
            Receipt r;
            r.diagnostics.message = "line " + std::to_string(index + 1) + ": " + why;
            done(index, bytes, ec, r);
        });
    }

    void send(Message&& message, std::uint64_t index, std::size_t bytes) {
        // The Receipt by reference: a by-value one would be moved in (nine strings).
        destination_->async_send(
            std::move(message),
            [this, index, bytes](boost::system::error_code ec, const Receipt& r) {
                done(index, bytes, ec, r);
            });
    }

    // A line's outcome, on the I/O thread: reported, and its room in the window given back.
    void done(std::uint64_t index, std::size_t bytes, boost::system::error_code ec,
              const Receipt& r) {
        outcome_.record(index, ec, r);
        std::lock_guard lock(mutex_);
        if (window_.remove(bytes)) room_.notify_all();
    }

    // What was read is delivered or failed, and reported, before the program ends: all of it
    // normally; within the grace period after a signal.
    void finish() {
        std::size_t unfinished = 0;  // lines handed on, some perhaps not yet sent
        {
            std::unique_lock lock(mutex_);
            room_.wait(lock, [&] { return window_.outstanding() == 0 || stop_signal_ != 0; });
            signal_seen_ = stop_signal_;
            unfinished = window_.outstanding();
        }
        if (signal_seen_ != 0) {
            std::fprintf(stderr,
                         "%soutbox: send: %s: no more input is read; %llu messages in flight get "
                         "up to %lld s to finish\n",
                         progress_ ? "\r\033[K" : "", signal_name(signal_seen_),
                         static_cast<unsigned long long>(unfinished), o_.grace_seconds);
            close_destination(std::chrono::seconds(o_.grace_seconds));
            std::unique_lock lock(mutex_);
            room_.wait(lock, [&] { return window_.outstanding() == 0; });
        } else {
            close_destination(std::chrono::seconds(30));
        }
        destinations_->close();  // the stager's idle connections would hold the event loop
        stats_ = destination_->stats();
        // The progress ticker reads the destination on the I/O thread: reset it there, and
        // let the report lines posted before this finish first.
        std::promise<void> released;
        asio::post(io_, [&] {
            ticker_.cancel();
            signals_->cancel();
            destination_.reset();
            released.set_value();
        });
        released.get_future().wait();
        work_.reset();
        io_thread_.join();
    }

    void close_destination(std::chrono::milliseconds deadline) {
        std::promise<void> closed;
        destination_->async_close(deadline, [&](boost::system::error_code) { closed.set_value(); });
        closed.get_future().wait();
    }

    // The closing lines and the exit status. Every reason the run is incomplete is said,
    // whichever decides the exit status: a report that is missing lines must never pass for
    // a complete one.
    int summarize() {
        const bool report_ok = outcome_.report.close();
        if (progress_) std::fputs("\r\033[K", stderr);
        std::fprintf(stderr, "delivered %llu, failed %llu\n",
                     static_cast<unsigned long long>(outcome_.delivered),
                     static_cast<unsigned long long>(outcome_.failed));
        if (!outcome_.first_failure.empty())
            std::fprintf(stderr, "first failure: %s\n", outcome_.first_failure.c_str());
        if (o_.print_stats) std::fputs(describe(stats_).c_str(), stderr);
        if (!input_error_.empty()) std::fprintf(stderr, "outbox: send: %s\n", input_error_.c_str());
        if (!report_ok)
            std::fprintf(stderr, "outbox: send: %s%s\n", outcome_.report.error().c_str(),
                         stopped_reading_ ? "; no more input was read after it" : "");
        if (signal_seen_ != 0) {
            std::fprintf(stderr, "outbox: send: stopped by %s after %llu input lines\n",
                         signal_name(signal_seen_), static_cast<unsigned long long>(index_));
            return 128 + signal_seen_;
        }
        if (!input_error_.empty() || !report_ok) return 2;
        return outcome_.failed == 0 ? 0 : 1;
    }

    const SendOptions& o_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    // Made in start_io, not before: a signal during setup (a blocking open of a FIFO, say)
    // keeps its default action, as it did before the I/O thread existed.
    std::optional<asio::signal_set> signals_;
    asio::steady_timer ticker_{io_};
    std::optional<Delivery> destinations_;
    std::unique_ptr<Destination> destination_;
    LineReader reader_;
    simdjson::dom::parser parser_;   // for --objects lines, on the thread that sends
    bool send_from_reader_ = false;  // see LineBatch
    Outcome outcome_;
    int wake_[2] = {-1, -1};
    std::thread io_thread_;
    const bool progress_ = isatty(STDERR_FILENO) != 0;

    std::mutex mutex_;
    std::condition_variable room_;
    // Read-ahead: at most this many lines, or bytes, handed on and not yet completed. As many
    // lines as SqsDestination takes in flight by default: more only waited in its waiting room
    // (8192 cost 5% more CPU per message, measured; Kafka was no faster with them).
    ReadAheadWindow window_{4096, 32 * 1024 * 1024};  // under mutex_
    int stop_signal_ = 0;                             // under mutex_
    std::vector<LineBatch> spare_batches_;            // under mutex_
    std::atomic<std::uint64_t> submitted_{0};

    std::uint64_t index_ = 0;  // input lines 0 to index_ - 1 were handed on, or blank
    std::string input_error_;
    bool stopped_reading_ = false;
    int signal_seen_ = 0;
    DestinationStats stats_;
};

}  // namespace

int run_send(int argc, char** argv) {
    SendOptions options;
    std::string error;
    switch (parse_send_options(argc, argv, options, error)) {
        case SendParse::help:
            std::cout << send_usage;
            return 0;
        case SendParse::usage_error:
            return usage_error(error);
        case SendParse::run:
            break;
    }
    return SendRun(options).run();
}

}  // namespace outbox::cli
