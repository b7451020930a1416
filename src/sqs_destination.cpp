// SqsDestination: a queue of accepted messages, batched into SendMessageBatch requests on a
// strand. Every entry is in exactly one place at a time: the waiting room (no capacity yet),
// the ready queue, a request on the wire, or the backoff queue; it leaves through complete().
#include <outbox/detail/aws_environment.hpp>
#include "backoff.hpp"
#include "clock_skew.hpp"
#include "dead_letter_slot.hpp"
#include "destination_counters.hpp"
#include "redact.hpp"

#include <outbox/detail/http_date.hpp>
#include <outbox/detail/sqs_protocol.hpp>
#include <outbox/envelope.hpp>
#include <outbox/sigv4.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
namespace sqs = detail::sqs;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// `leaving`: taken out of every list, about to be completed.
enum class Place { waiting_room, staging, ready, request, backoff, leaving };

struct Entry {
    // Boost 1.81's any_completion_handler move-assignment recurses forever: only ever
    // move-construct it.
    Entry(Message m, Destination::SendHandler h) : message(std::move(m)), handler(std::move(h)) {}

    std::uint64_t seq = 0;
    Message message;
    Destination::SendHandler handler;
    std::size_t size = 0;       // counted against max_in_flight_bytes
    std::size_t wire_size = 0;  // what SQS counts: after staging, the URL message
    Place place = Place::waiting_room;
    std::string staged_url{};
    std::string staged_key{};
    std::uint32_t attempts = 0;
    bool maybe_delivered = false;  // an earlier attempt's reply was lost
    bool solo = false;             // send alone: its batch was refused as a whole
    Clock::time_point accepted_at{};
    Clock::time_point deadline = Clock::time_point::max();  // accepted_at + message_deadline
    Clock::time_point ready_at{};
    Diagnostics last_diagnostics{};
};

// "Code: message" of what a service or transport said, for messages that add context.
std::string describe(const Diagnostics& d) {
    if (d.code.empty() || d.message.find(d.code) != std::string::npos) return d.message;
    return d.message.empty() ? d.code : d.code + ": " + d.message;
}

std::string seconds_text(std::chrono::milliseconds ms) {
    return ms.count() % 1000 == 0 ? std::to_string(ms.count() / 1000) + " s"
                                  : std::to_string(ms.count()) + " ms";
}

}  // namespace

struct SqsDestination::Impl : std::enable_shared_from_this<SqsDestination::Impl> {
    using Strand = asio::strand<asio::any_io_executor>;

    struct Request {
        std::vector<Entry*> entries;
        bool batch = false;
        asio::cancellation_signal cancel;
    };

    Impl(asio::any_io_executor ex, SqsDestinationConfig cfg)
        : executor(ex),
          strand(asio::make_strand(ex)),
          config(std::move(cfg)),
          http(ex, config.http),
          linger_timer(strand),
          retry_timer(strand),
          deadline_timer(strand),
          close_timer(strand),
          rng(std::random_device{}()) {}

    asio::any_io_executor executor;
    Strand strand;
    SqsDestinationConfig config;
    HttpClient http;
    std::optional<sigv4::Signer> signer;
    HttpOrigin origin;
    std::string host_header;

    // Queue facts; written on the strand, read by queue_url()/is_fifo() from anywhere.
    mutable std::mutex facts_mutex;
    std::string queue_url;
    std::atomic<bool> fifo{false};
    enum class QueueState { unresolved, resolving, ready } queue_state = QueueState::unresolved;
    std::size_t max_message_size = 0;
    std::optional<bool> content_based_dedup;
    std::uint32_t resolve_attempts = 0;

    // Messages, by seq: the oldest first, which is also the order of their deadlines.
    std::uint64_t next_seq = 1;
    std::map<std::uint64_t, std::unique_ptr<Entry>> entries;
    std::deque<Entry*> waiting_room;
    std::deque<Entry*> ready;  // by seq
    std::multimap<Clock::time_point, Entry*> backoff;
    std::unordered_map<std::string, std::size_t> busy_groups;  // FIFO: in a request or backing off
    std::size_t admitted = 0;
    std::size_t admitted_bytes = 0;
    std::size_t requests_in_flight = 0;
    std::vector<std::shared_ptr<Request>> open_requests;

    asio::steady_timer linger_timer;
    bool linger_armed = false;
    asio::steady_timer retry_timer;
    Clock::time_point retry_timer_at = Clock::time_point::max();
    asio::steady_timer deadline_timer;  // at the oldest deadline of a message not on the wire
    Clock::time_point deadline_timer_at = Clock::time_point::max();
    asio::cancellation_signal resolve_cancel;  // the queue lookup in flight, if any

    bool closing = false;
    bool stopped = false;  // closed or destroyed: nothing more goes on the wire
    bool close_deadline_passed = false;
    std::optional<CloseHandler> close_handler;
    asio::steady_timer close_timer;

    detail::ClockSkew clock;
    std::minstd_rand rng;
    detail::DestinationCounters stats;
    detail::DeadLetterSlot dead_letters;

    // ---- acceptance ----------------------------------------------------------------------

    void accept(std::unique_ptr<Entry> owned) {
        Entry* e = owned.get();
        e->seq = next_seq++;
        e->accepted_at = Clock::now();
        if (config.retry.message_deadline.count() > 0)
            e->deadline = e->accepted_at + config.retry.message_deadline;
        entries.emplace_hint(entries.end(), e->seq, std::move(owned));
        install_cancellation(*e);
        if (closing) return fail(*e, asio::error::operation_aborted, "the destination is closed");
        if (deadline_timer_at == Clock::time_point::max()) arm_deadline_timer();
        if (has_room(e->size)) {
            admit(*e);
        } else {
            stats.waited_for_room();
            waiting_room.push_back(e);
        }
    }

    bool has_room(std::size_t size) const {
        return admitted == 0 || (admitted < config.max_in_flight_messages &&
                                 admitted_bytes + size <= config.max_in_flight_bytes);
    }

    void admit(Entry& e) {
        ++admitted;
        admitted_bytes += e.size;
        e.place = Place::ready;
        e.ready_at = Clock::now();
        if (queue_state != QueueState::ready) {
            ready.push_back(&e);
            if (queue_state == QueueState::unresolved) resolve();
            return;
        }
        if (should_stage(e)) return stage(e);
        if (!check_against_queue(e)) return;
        ready.push_back(&e);
        dispatch_ready();
    }

    bool should_stage(const Entry& e) const {
        if (!config.stager || config.staging == StagingPolicy::never || !e.staged_url.empty())
            return false;
        if (config.staging == StagingPolicy::always) return true;
        const std::size_t threshold =
            config.staging_threshold ? config.staging_threshold : max_message_size;
        return e.wire_size > threshold;
    }

    // Uploads the body; the message then carries the staged-payload envelope.
    void stage(Entry& e) {
        e.place = Place::staging;
        hold_group(e);  // FIFO: later messages of the group wait for this one
        // A copy: should the message fail, its dead letter still carries the body.
        config.stager->async_stage(
            e.message.body, asio::bind_executor(strand, [self = shared_from_this(), seq = e.seq](
                                                            error_code ec, StagedPayload p) {
                self->on_staged(seq, ec, std::move(p));
            }));
    }

    void on_staged(std::uint64_t seq, error_code ec, StagedPayload payload) {
        auto it = entries.find(seq);
        if (it == entries.end()) return;
        Entry& e = *it->second;
        release_group(e);
        if (!ec && close_deadline_passed) ec = asio::error::operation_aborted;
        if (ec) {
            e.last_diagnostics = std::move(payload.diagnostics);
            e.last_diagnostics.message =
                "staging the payload in S3 failed" + (e.last_diagnostics.message.empty()
                                                          ? std::string()
                                                          : ": " + e.last_diagnostics.message);
            return fail(e, ec, {});
        }
        stats.staged();
        e.staged_url = payload.url;
        e.staged_key = std::move(payload.key);
        e.message.body = wrap(staged_payload_message(payload.url, payload.expires_in));
        e.wire_size = sqs::message_size(e.message);
        e.place = Place::ready;
        e.ready_at = Clock::now();
        if (!check_against_queue(e)) return;
        insert_ready(e);
        dispatch_ready();
    }

    std::string wrap(std::string body) const {
        if (config.envelope != Envelope::cloudevents) return body;
        return cloudevents_structured(config.cloudevents, body);
    }

    // Checks that need the queue's attributes. False when the entry was failed.
    bool check_against_queue(Entry& e) {
        if (e.wire_size > max_message_size) {
            fail(e, Errc::payload_too_large,
                 "the message has " + std::to_string(e.wire_size) +
                     " bytes (body and attributes); the queue takes at most " +
                     std::to_string(max_message_size));
            return false;
        }
        if (fifo && e.message.deduplication_id.empty() && content_based_dedup == false) {
            fail(e, Errc::invalid_message,
                 "the FIFO queue has content-based deduplication off: give every message a "
                 "deduplication id");
            return false;
        }
        return true;
    }

    void admit_waiting() {
        while (!waiting_room.empty() && has_room(waiting_room.front()->size)) {
            Entry* e = waiting_room.front();
            waiting_room.pop_front();
            admit(*e);
        }
    }

    void install_cancellation(Entry& e) {
        auto slot = asio::get_associated_cancellation_slot(e.handler);
        if (!slot.is_connected()) return;
        slot.assign(
            [weak = weak_from_this(), seq = e.seq, strand = strand](asio::cancellation_type) {
                asio::dispatch(strand, [weak, seq] {
                    if (auto self = weak.lock()) self->cancel_entry(seq);
                });
            });
    }

    // Removes a message that is not on the wire from the list it waits in.
    void take_out(Entry& e) {
        switch (e.place) {
            case Place::request:
            case Place::leaving:
                return;
            case Place::staging:
                release_group(e);  // held while its upload runs; the upload's result is dropped
                return;
            case Place::waiting_room:
                waiting_room.erase(std::find(waiting_room.begin(), waiting_room.end(), &e));
                return;
            case Place::ready:
                ready.erase(std::find(ready.begin(), ready.end(), &e));
                return;
            case Place::backoff:
                for (auto b = backoff.begin(); b != backoff.end(); ++b)
                    if (b->second == &e) {
                        backoff.erase(b);
                        break;
                    }
                release_group(e);
                return;
        }
    }

    void cancel_entry(std::uint64_t seq) {
        auto it = entries.find(seq);
        if (it == entries.end()) return;
        Entry& e = *it->second;
        if (e.place == Place::request || e.place == Place::staging || e.place == Place::leaving)
            return;  // completes with its request's (or upload's) outcome, or is completing
        take_out(e);
        if (e.maybe_delivered)
            fail(e, Errc::outcome_unknown, "cancelled after a reply was lost");
        else
            fail(e, asio::error::operation_aborted, "cancelled");
    }

    // ---- message deadlines ---------------------------------------------------------------

    // A message on the wire is bounded by its request's timeout (never past its deadline);
    // every other one by this timer, armed at the earliest deadline among them — which may
    // have passed already (then it fires at once). Deadlines grow with seq.
    void arm_deadline_timer() {
        if (config.retry.message_deadline.count() <= 0 || stopped) return;
        Clock::time_point next = Clock::time_point::max();
        for (const auto& [seq, e] : entries)
            if (e->place != Place::request && e->place != Place::leaving) {
                next = e->deadline;
                break;
            }
        if (next == deadline_timer_at) return;
        deadline_timer_at = next;
        if (next == Clock::time_point::max()) {
            deadline_timer.cancel();
            return;
        }
        deadline_timer.expires_at(next);
        deadline_timer.async_wait([self = shared_from_this(), next](error_code ec) {
            if (ec || self->deadline_timer_at != next) return;  // re-armed, or shutting down
            self->deadline_timer_at = Clock::time_point::max();
            self->expire_due();
        });
    }

    void expire_due() {
        // Every due message leaves its list before any is completed: completing one admits
        // waiting messages and may send a batch, which must not pick up (or free) another.
        const auto now = Clock::now();
        std::vector<std::pair<std::uint64_t, const char*>> due;
        for (const auto& [seq, e] : entries) {
            if (e->deadline > now) break;
            if (e->place == Place::request || e->place == Place::leaving) continue;
            due.emplace_back(seq, e->place == Place::waiting_room ? "waiting for room"
                                  : e->place == Place::staging    ? "its payload was being staged"
                                  : e->place == Place::backoff    ? "waiting to be retried"
                                  : queue_state != QueueState::ready
                                      ? "the queue was being looked up"
                                      : "waiting to be sent");
            take_out(*e);
            e->place = Place::leaving;
        }
        for (const auto& [seq, where] : due) {
            const auto it = entries.find(seq);
            if (it == entries.end()) continue;
            Entry& e = *it->second;
            std::string why = "the message deadline (" +
                              seconds_text(config.retry.message_deadline) + ") passed while " +
                              where;
            if (!e.last_diagnostics.empty())
                why += "; last attempt: " + describe(e.last_diagnostics);
            fail(e,
                 e.maybe_delivered ? error_code(Errc::outcome_unknown) : error_code(Errc::timeout),
                 std::move(why));
        }
        arm_deadline_timer();
        dispatch_ready();
    }

    // The timeout of a request starting now: the configured one, cut short by `deadline`
    // (the earliest among its messages). Zero when that deadline has passed.
    std::chrono::milliseconds request_timeout(Clock::time_point deadline) const {
        auto timeout = config.http.request_timeout;
        if (deadline != Clock::time_point::max()) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            timeout = std::clamp(left, std::chrono::milliseconds(0), timeout);
        }
        return timeout;
    }

    // ---- completion ----------------------------------------------------------------------

    void complete(Entry& e, error_code ec, Receipt receipt) {
        const bool was_admitted = e.place != Place::waiting_room;
        if (was_admitted) {
            --admitted;
            admitted_bytes -= e.size;
        }
        receipt.attempts = e.attempts;
        auto slot = asio::get_associated_cancellation_slot(e.handler);
        if (slot.is_connected()) slot.clear();
        auto handler = std::move(e.handler);
        if (ec) {
            stats.failed();
            if (auto dead_letter = dead_letters.get())
                detail::DeadLetterSlot::deliver(
                    dead_letter, DeadLetter{std::move(e.message), ec, receipt, queue_url},
                    config.logger);
        } else {
            stats.delivered(e.message.body.size(), e.accepted_at);
        }
        entries.erase(e.seq);  // e is gone from here on
        if (entries.empty() && deadline_timer_at != Clock::time_point::max()) {
            // Nothing left to time out: the timer must not keep the event loop running.
            deadline_timer_at = Clock::time_point::max();
            deadline_timer.cancel();
        }
        asio::post(executor, asio::append(std::move(handler), ec, std::move(receipt)));
        if (was_admitted) admit_waiting();
        maybe_finish_close();
    }

    void fail(Entry& e, error_code ec, std::string why) {
        if (!session_token.empty()) {
            why = redact_token(std::move(why));
            e.last_diagnostics.message = redact_token(std::move(e.last_diagnostics.message));
            e.last_diagnostics.code = redact_token(std::move(e.last_diagnostics.code));
        }
        if (config.logger.enabled(LogLevel::debug))
            config.logger.log(LogLevel::debug, "sqs: message " + std::to_string(e.seq) +
                                                   " failed: " + ec.message() +
                                                   (why.empty() ? "" : ": " + why));
        Receipt r;
        r.diagnostics = std::move(e.last_diagnostics);
        if (!why.empty()) r.diagnostics.message = std::move(why);
        r.staged_url = std::move(e.staged_url);  // an object may exist even though the send failed
        r.staged_key = std::move(e.staged_key);
        complete(e, ec, std::move(r));
    }

    void fail_with_last(Entry& e, error_code ec, const Diagnostics& d) {
        e.last_diagnostics = d;
        fail(e, ec, {});
    }

    // ---- queue resolution: GetQueueUrl, GetQueueAttributes --------------------------------

    void resolve() {
        if (stopped) return;
        queue_state = QueueState::resolving;
        // The lookup is bounded by the deadline of the oldest message waiting for it.
        const auto deadline = ready.empty() ? Clock::time_point::max() : ready.front()->deadline;
        if (queue_url.empty()) {
            std::string body;
            sqs::write_get_queue_url(body, config.queue_name);
            call(
                "GetQueueUrl", std::move(body),
                [self = shared_from_this()](error_code ec, HttpResponse res) {
                    self->on_get_queue_url(ec, std::move(res));
                },
                resolve_cancel.slot(), deadline);
            return;
        }
        if (config.max_message_size != 0 && !fifo) return resolved(config.max_message_size);
        std::string body;
        sqs::write_get_queue_attributes(body, queue_url);
        call(
            "GetQueueAttributes", std::move(body),
            [self = shared_from_this()](error_code ec, HttpResponse res) {
                self->on_get_queue_attributes(ec, std::move(res));
            },
            resolve_cancel.slot(), deadline);
    }

    // Retries resolution with backoff, or fails everything queued when it cannot work.
    void resolve_failed(error_code ec, const Diagnostics& d, const HttpResponse* res) {
        ++resolve_attempts;
        if (is_retryable(ec) && resolve_attempts < config.retry.max_attempts &&
            !close_deadline_passed && !stopped && !ready.empty()) {
            auto delay = backoff_delay(resolve_attempts, res);
            config.logger.log(LogLevel::info,
                              "sqs: looking up the queue failed (" + redact_token(describe(d)) +
                                  "), trying again in " + std::to_string(delay.count()) + " ms");
            retry_timer.expires_after(delay);
            retry_timer_at = Clock::now() + delay;
            retry_timer.async_wait([self = shared_from_this()](error_code wait_ec) {
                self->retry_timer_at = Clock::time_point::max();
                if (!wait_ec) self->resolve();
            });
            return;
        }
        if (!stopped)
            config.logger.log(LogLevel::warning,
                              "sqs: cannot look up the queue: " + redact_token(describe(d)));
        queue_state = QueueState::unresolved;
        resolve_attempts = 0;
        auto pending = std::move(ready);
        ready.clear();
        Diagnostics lookup = d;
        lookup.message = "looking up the queue failed: " + describe(d);
        for (Entry* e : pending) fail_with_last(*e, ec, lookup);
    }

    // What a failed call says: the transport's account, or the error's own words.
    static Diagnostics transport_diagnostics(error_code ec, const HttpResponse& res) {
        Diagnostics d;
        d.message = res.failure.empty() ? ec.message() : res.failure;
        return d;
    }

    void on_get_queue_url(error_code ec, HttpResponse res) {
        Diagnostics d = ec ? transport_diagnostics(ec, res) : Diagnostics{};
        if (!ec && res.status != 200) ec = sqs::parse_error_response(res, d);
        std::string url;
        if (!ec && sqs::parse_get_queue_url_result(res.body, url)) {
            ec = Errc::malformed_response;
            d.message = "unreadable GetQueueUrl reply";
        }
        sqs::QueueAddress address;
        std::string why;
        if (!ec && sqs::parse_queue_url(url, address, why)) {
            ec = Errc::malformed_response;
            d.message = "GetQueueUrl returned \"" + url + "\": " + why;
        }
        if (ec) return resolve_failed(ec, d, &res);
        {
            std::lock_guard lock(facts_mutex);
            queue_url = std::move(url);
        }
        fifo = address.fifo;
        resolve();
    }

    void on_get_queue_attributes(error_code ec, HttpResponse res) {
        Diagnostics d = ec ? transport_diagnostics(ec, res) : Diagnostics{};
        if (!ec && res.status != 200) ec = sqs::parse_error_response(res, d);
        std::size_t size = 0;
        bool content_dedup = false;
        if (!ec && sqs::parse_get_queue_attributes_result(res.body, size, content_dedup)) {
            ec = Errc::malformed_response;
            d.message = "unreadable GetQueueAttributes reply";
        }
        if (ec && (is_retryable(ec) || sqs::is_missing_queue_error(d)))
            return resolve_failed(ec, d, &res);
        if (ec) {
            // Send-only credentials often lack sqs:GetQueueAttributes: go on with the default.
            config.logger.log(LogLevel::info, "sqs: GetQueueAttributes refused (" +
                                                  (d.code.empty() ? ec.message() : d.code) +
                                                  "); assuming the default 256 KiB limit");
            return resolved(config.max_message_size ? config.max_message_size
                                                    : sqs::default_max_message_size);
        }
        content_based_dedup = content_dedup;
        if (config.max_message_size != 0) size = config.max_message_size;
        resolved(size ? std::min(size, sqs::largest_max_message_size)
                      : sqs::default_max_message_size);
    }

    void resolved(std::size_t limit) {
        max_message_size = limit;
        queue_state = QueueState::ready;
        resolve_attempts = 0;
        auto pending = std::move(ready);
        ready.clear();
        for (Entry* e : pending) {
            if (should_stage(*e))
                stage(*e);
            else if (check_against_queue(*e))
                ready.push_back(e);
        }
        dispatch_ready();
    }

    // ---- requests ------------------------------------------------------------------------

    using ResponseHandler = std::function<void(error_code, HttpResponse)>;

    // A call waiting for credentials, which can take seconds (instance metadata, STS): the
    // deadline answers it if they come too late.
    struct PendingCall {
        explicit PendingCall(Strand& s) : timer(s) {}
        ResponseHandler done;
        asio::steady_timer timer;
        bool answered = false;
    };

    // Signs and sends one SQS JSON-protocol call, to end by `deadline` (the earliest of its
    // messages'); `done` runs on the strand, once.
    void call(std::string_view action, std::string body, ResponseHandler done,
              asio::cancellation_slot slot, Clock::time_point deadline) {
        auto pending = std::make_shared<PendingCall>(strand);
        pending->done = std::move(done);
        if (deadline != Clock::time_point::max()) {
            pending->timer.expires_at(deadline);
            pending->timer.async_wait([pending](error_code ec) {
                if (ec || pending->answered) return;
                pending->answered = true;
                HttpResponse res;
                res.failure = "the message deadline passed while credentials were fetched";
                pending->done(Errc::timeout, std::move(res));
            });
        }
        config.credentials->async_get_credentials(asio::bind_executor(
            strand, [self = shared_from_this(), target = "AmazonSQS." + std::string(action),
                     body = std::move(body), pending, slot,
                     deadline](error_code ec, Credentials creds) mutable {
                if (pending->answered) return;  // the deadline came first
                pending->answered = true;
                pending->timer.cancel();
                auto answer = std::move(pending->done);
                if (ec) {
                    HttpResponse res;
                    res.failure = self->credentials_failure(ec);
                    return answer(ec, std::move(res));
                }
                // Abandoned (close deadline, destruction) while the credentials were fetched.
                if (self->close_deadline_passed || self->stopped)
                    return answer(asio::error::operation_aborted, {});
                const auto timeout = self->request_timeout(deadline);
                if (timeout.count() <= 0) {
                    HttpResponse res;
                    res.failure = "the message deadline passed before the request was sent";
                    return answer(Errc::timeout, std::move(res));
                }
                self->send_signed(target, std::move(body), std::move(creds), std::move(answer),
                                  slot, timeout);
            }));
    }

    // The session token of the latest request: a service error may echo it, and only the
    // parsed (unescaped) text shows it reliably, so receipts and logs are redacted too.
    std::string session_token;

    std::string redact_token(std::string text) const {
        detail::redact(text, session_token);
        return text;
    }

    std::string credentials_failure(error_code ec) const {
        if (ec == Errc::credentials_not_found)
            return "no AWS credentials found; tried " + config.credentials->name();
        return "cannot get AWS credentials (" + config.credentials->name() + "): " + ec.message();
    }

    void send_signed(const std::string& target, std::string body, Credentials creds,
                     ResponseHandler done, asio::cancellation_slot slot,
                     std::chrono::milliseconds timeout) {
        static constexpr std::string_view content_type = "application/x-amz-json-1.0";
        const sigv4::Header signed_headers[] = {{"content-type", content_type},
                                                {"x-amz-target", target}};
        const auto hash = sigv4::payload_hash(body);
        sigv4::Request to_sign;
        to_sign.method = "POST";
        to_sign.host = host_header;
        to_sign.path = "/";
        to_sign.headers = signed_headers;
        to_sign.payload_hash = hash.view();
        sigv4::HeaderSignature sig;
        if (auto ec = signer->sign_headers(to_sign, creds, clock.now(), sig)) return done(ec, {});
        HttpRequest req;
        req.method = "POST";
        req.origin = origin;
        req.target = "/";
        req.timeout = timeout;
        req.headers.reserve(5);
        req.headers.emplace_back("Content-Type", content_type);
        req.headers.emplace_back("X-Amz-Target", target);
        req.headers.emplace_back("X-Amz-Date", std::move(sig.amz_date));
        req.headers.emplace_back("Authorization", std::move(sig.authorization));
        if (creds.has_session_token()) {
            req.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
            if (session_token != creds.session_token) session_token = creds.session_token;
            // A service error may echo it (SignatureDoesNotMatch quotes the canonical request):
            // it never reaches a receipt, a report or a log.
            done = [done = std::move(done), token = std::move(creds.session_token)](
                       error_code ec, HttpResponse res) {
                if (res.status != 200) detail::redact(res.body, token);
                detail::redact(res.failure, token);
                done(ec, std::move(res));
            };
        }
        req.body = std::move(body);
        http.async_request(std::move(req), asio::bind_cancellation_slot(
                                               slot, asio::bind_executor(strand, std::move(done))));
    }

    // ---- batching ------------------------------------------------------------------------

    bool group_busy(const Entry& e) const {
        return fifo && !e.message.group_id.empty() && busy_groups.count(e.message.group_id) != 0;
    }
    void hold_group(const Entry& e) {
        if (fifo && !e.message.group_id.empty()) ++busy_groups[e.message.group_id];
    }
    void release_group(const Entry& e) {
        if (!fifo || e.message.group_id.empty()) return;
        auto it = busy_groups.find(e.message.group_id);
        if (it != busy_groups.end() && --it->second == 0) busy_groups.erase(it);
    }

    // Picks the next batch from the ready queue without taking it: in seq order, skipping
    // FIFO groups that have a message on the wire or backing off.
    std::vector<std::size_t> pick_batch(bool& full) const {
        std::vector<std::size_t> picked;
        std::size_t bytes = 0;
        const std::size_t max_entries =
            std::clamp<std::size_t>(config.max_batch_entries, 1, sqs::max_batch_entries);
        full = false;
        for (std::size_t i = 0; i < ready.size(); ++i) {
            const Entry& e = *ready[i];
            if (group_busy(e)) continue;
            if (e.solo) {
                if (picked.empty()) {
                    picked.push_back(i);
                    full = true;
                    return picked;
                }
                continue;
            }
            if (bytes + e.wire_size > max_message_size) {
                full = true;
                break;
            }
            picked.push_back(i);
            bytes += e.wire_size;
            if (picked.size() == max_entries) {
                full = true;
                break;
            }
        }
        return picked;
    }

    void dispatch_ready() {
        if (queue_state != QueueState::ready) return;
        while (requests_in_flight < config.max_concurrent_requests && !ready.empty()) {
            bool full = false;
            auto picked = pick_batch(full);
            if (picked.empty()) return;
            if (!full && !closing && config.linger.count() > 0) {
                const auto due = ready.front()->ready_at + config.linger;
                if (Clock::now() < due) {
                    arm_linger(due);
                    return;
                }
            }
            auto request = std::make_shared<Request>();
            request->entries.reserve(picked.size());
            for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
                Entry* e = ready[*it];
                ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(*it));
                request->entries.push_back(e);
            }
            std::reverse(request->entries.begin(), request->entries.end());
            send_batch(std::move(request));
        }
    }

    void arm_linger(Clock::time_point due) {
        if (linger_armed) return;
        linger_armed = true;
        linger_timer.expires_at(due);
        linger_timer.async_wait([self = shared_from_this()](error_code) {
            self->linger_armed = false;
            self->dispatch_ready();
        });
    }

    void send_batch(std::shared_ptr<Request> request) {
        std::string body;
        std::size_t reserve = 256;
        for (const Entry* e : request->entries) reserve += e->wire_size + e->wire_size / 8 + 128;
        body.reserve(reserve);
        request->batch = request->entries.size() > 1;
        for (Entry* e : request->entries) {
            e->place = Place::request;
            if (++e->attempts > 1) stats.retried();
            hold_group(*e);
        }
        if (request->batch) {
            sqs::write_batch_begin(body, queue_url);
            for (std::size_t i = 0; i < request->entries.size(); ++i)
                sqs::write_batch_entry(body, i, request->entries[i]->message, i == 0);
            sqs::write_batch_end(body);
        } else {
            sqs::write_send_message(body, queue_url, request->entries[0]->message);
        }
        ++requests_in_flight;
        stats.request();
        open_requests.push_back(request);
        // Never past the earliest deadline among its messages.
        Clock::time_point earliest = Clock::time_point::max();
        for (const Entry* e : request->entries) earliest = std::min(earliest, e->deadline);
        call(
            request->batch ? "SendMessageBatch" : "SendMessage", std::move(body),
            [self = shared_from_this(), request](error_code ec, HttpResponse res) {
                self->on_send_response(*request, ec, std::move(res));
            },
            request->cancel.slot(), earliest);
    }

    void on_send_response(Request& request, error_code ec, HttpResponse res) {
        --requests_in_flight;
        std::erase_if(open_requests, [&](const auto& r) { return r.get() == &request; });
        for (Entry* e : request.entries) release_group(*e);

        if (ec) {
            Diagnostics d = transport_diagnostics(ec, res);
            if (ec == asio::error::operation_aborted)
                d.message = "not sent: the destination was closing";
            for (Entry* e : request.entries) {
                if (ec == Errc::outcome_unknown) e->maybe_delivered = true;
                retry_or_fail(*e, ec, d, nullptr);
            }
            return dispatch_ready();
        }
        if (res.status != 200) {
            Diagnostics d;
            const error_code err = sqs::parse_error_response(res, d);
            if (sqs::is_clock_skew_error(d) && correct_clock(res)) {
                for (Entry* e : request.entries) requeue_now(*e, err, d);
                return dispatch_ready();
            }
            if (err == Errc::service_error && request.entries.size() > 1 &&
                sqs::is_batch_refusal_of_one_entry(d.code)) {
                // One bad entry can refuse a whole batch: send each alone to find it.
                for (Entry* e : request.entries) {
                    e->solo = true;
                    requeue_now(*e, err, d);
                }
                return dispatch_ready();
            }
            for (Entry* e : request.entries) retry_or_fail(*e, err, d, &res);
            return dispatch_ready();
        }

        sqs::SendResult result;
        const error_code parse_ec = request.batch
                                        ? sqs::parse_send_message_batch_result(res.body, result)
                                        : sqs::parse_send_message_result(res.body, result);
        std::vector<bool> settled(request.entries.size(), false);
        if (!parse_ec) {
            const std::string_view request_id = res.header("x-amzn-RequestId");
            for (auto& ok : result.successful) {
                if (ok.id >= request.entries.size() || settled[ok.id]) continue;
                settled[ok.id] = true;
                deliver(*request.entries[ok.id], ok, request_id);
            }
            for (auto& bad : result.failed) {
                if (bad.id >= request.entries.size() || settled[bad.id]) continue;
                settled[bad.id] = true;
                Entry& e = *request.entries[bad.id];
                Diagnostics d;
                d.http_status = res.status;
                d.code = bad.code;
                d.message = bad.message;
                d.request_id = std::string(request_id);
                d.sender_fault = bad.sender_fault;
                if (bad.sender_fault)
                    fail_with_last(e, Errc::service_error, d);
                else
                    retry_or_fail(e,
                                  sqs::is_throttling_code(bad.code) ? Errc::throttled
                                                                    : Errc::service_unavailable,
                                  d, nullptr);
            }
        }
        // Entries the reply does not mention (or an unreadable reply): the server may have
        // stored them, so they count as lost replies.
        Diagnostics d;
        d.http_status = res.status;
        d.request_id = std::string(res.header("x-amzn-RequestId"));
        d.message = parse_ec ? "unreadable SendMessage reply: it may or may not have been stored"
                             : "the reply does not mention this message: it may or may not have "
                               "been stored";
        for (std::size_t i = 0; i < request.entries.size(); ++i) {
            if (settled[i]) continue;
            request.entries[i]->maybe_delivered = true;
            retry_or_fail(*request.entries[i], Errc::outcome_unknown, d, nullptr);
        }
        dispatch_ready();
    }

    void deliver(Entry& e, sqs::SentEntry& sent, std::string_view request_id) {
        Diagnostics d;
        d.http_status = 200;
        d.request_id = std::string(request_id);
        // A reply we cannot check is no proof that SQS stored what we sent: as if it were lost.
        const bool want_attributes_md5 = !e.message.attributes.empty();
        if (config.require_md5 &&
            (sent.md5_of_body.empty() || (want_attributes_md5 && sent.md5_of_attributes.empty()))) {
            d.message = std::string("the reply has no ") +
                        (sent.md5_of_body.empty() ? "MD5OfMessageBody" : "MD5OfMessageAttributes") +
                        " to check (message id " + sent.message_id +
                        "): it may or may not have been stored";
            e.maybe_delivered = true;
            return retry_or_fail(e, Errc::malformed_response, d, nullptr);
        }
        bool body_ok = true;
        if (!sent.md5_of_body.empty()) {
            const auto body_md5 = sqs::md5_of_body(e.message.body);
            body_ok = std::string_view(body_md5.data(), body_md5.size()) == sent.md5_of_body;
        }
        bool attributes_ok = true;
        if (want_attributes_md5 && !sent.md5_of_attributes.empty()) {
            const auto attr_md5 = sqs::md5_of_attributes(e.message.attributes);
            attributes_ok =
                std::string_view(attr_md5.data(), attr_md5.size()) == sent.md5_of_attributes;
        }
        if (!body_ok || !attributes_ok) {
            d.message = std::string(body_ok ? "MD5OfMessageAttributes" : "MD5OfMessageBody") +
                        " does not match what was sent; message id " + sent.message_id;
            return fail_with_last(e, Errc::checksum_mismatch, d);
        }
        Receipt r;
        r.message_id = std::move(sent.message_id);
        r.sequence_number = std::move(sent.sequence_number);
        r.staged_url = std::move(e.staged_url);
        r.staged_key = std::move(e.staged_key);
        r.diagnostics = std::move(e.last_diagnostics);
        if (!session_token.empty())
            r.diagnostics.message = redact_token(std::move(r.diagnostics.message));
        complete(e, {}, std::move(r));
    }

    // ---- retries -------------------------------------------------------------------------

    std::chrono::milliseconds backoff_delay(std::uint32_t attempts, const HttpResponse* res) {
        std::optional<std::chrono::milliseconds> asked;
        if (res != nullptr)
            asked = detail::parse_retry_after(res->header("Retry-After"),
                                              std::chrono::system_clock::now());
        return detail::backoff_delay(config.retry, attempts, rng, asked);
    }

    // An attempt failed: another one later, or the message fails. A message an earlier
    // attempt may have delivered fails with outcome_unknown unless the service refused it.
    void retry_or_fail(Entry& e, error_code ec, const Diagnostics& d, const HttpResponse* res) {
        e.last_diagnostics = d;
        const auto final_error = [&] {
            return e.maybe_delivered && (is_retryable(ec) || ec == asio::error::operation_aborted)
                       ? error_code(Errc::outcome_unknown)
                       : ec;
        };
        if (!is_retryable(ec) || close_deadline_passed) return fail(e, final_error(), {});
        if (e.attempts >= config.retry.max_attempts)
            return fail(e, final_error(),
                        "gave up after " + std::to_string(e.attempts) +
                            " attempts; last attempt: " + describe(d));
        const auto delay = backoff_delay(e.attempts, res);
        const auto when = Clock::now() + delay;
        if (when >= e.deadline)
            return fail(e, final_error(),
                        "the message deadline (" + seconds_text(config.retry.message_deadline) +
                            ") leaves no time for another attempt; last attempt: " + describe(d));
        e.place = Place::backoff;
        hold_group(e);
        backoff.emplace(when, &e);
        watch_deadline(e);
        arm_retry_timer();
    }

    // A retry without waiting (clock corrected, or batch split); still counts as an attempt.
    void requeue_now(Entry& e, error_code ec, const Diagnostics& d) {
        e.last_diagnostics = d;
        if (e.attempts >= config.retry.max_attempts || Clock::now() >= e.deadline)
            return fail(e, e.maybe_delivered ? error_code(Errc::outcome_unknown) : ec, {});
        insert_ready(e);
    }

    // A message back from a request waits again: the timer must cover its deadline.
    void watch_deadline(const Entry& e) {
        if (e.deadline < deadline_timer_at) arm_deadline_timer();
    }

    void insert_ready(Entry& e) {
        e.place = Place::ready;
        e.ready_at = Clock::now();
        watch_deadline(e);
        auto pos = std::upper_bound(ready.begin(), ready.end(), e.seq,
                                    [](std::uint64_t seq, const Entry* x) { return seq < x->seq; });
        ready.insert(pos, &e);
    }

    void arm_retry_timer() {
        if (backoff.empty() || queue_state != QueueState::ready) return;
        const auto due = backoff.begin()->first;
        if (due >= retry_timer_at) return;
        retry_timer_at = due;
        retry_timer.expires_at(due);
        retry_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec) return;  // re-armed earlier, or shutting down
            self->retry_timer_at = Clock::time_point::max();
            self->release_due();
        });
    }

    void release_due() {
        const auto now = Clock::now();
        while (!backoff.empty() && backoff.begin()->first <= now) {
            Entry* e = backoff.begin()->second;
            backoff.erase(backoff.begin());
            release_group(*e);
            insert_ready(*e);
        }
        arm_retry_timer();
        dispatch_ready();
    }

    bool correct_clock(const HttpResponse& res) {
        if (!clock.correct(res.header("Date"))) return false;
        config.logger.log(
            LogLevel::warning,
            "sqs: the local clock is off by " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::seconds>(clock.offset()).count()) +
                " s from the server's; signing with the server's time");
        return true;
    }

    // ---- close ---------------------------------------------------------------------------

    void close(std::chrono::milliseconds deadline, CloseHandler handler) {
        if (close_handler) {  // a second close: complete it at once
            asio::post(executor, asio::append(std::move(handler),
                                              error_code(asio::error::operation_aborted)));
            return;
        }
        closing = true;
        close_handler.emplace(std::move(handler));
        close_timer.expires_after(deadline);
        close_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec) self->on_close_deadline();
        });
        if (queue_state == QueueState::ready) {
            release_all_backoff_now();
            dispatch_ready();
        }
        maybe_finish_close();
    }

    // Closing sends what backs off at once, rather than after its delay.
    void release_all_backoff_now() {
        while (!backoff.empty()) {
            Entry* e = backoff.begin()->second;
            backoff.erase(backoff.begin());
            release_group(*e);
            insert_ready(*e);
        }
    }

    void on_close_deadline() {
        close_deadline_passed = true;
        abandon_all("the close deadline passed");
    }

    // Fails everything not on the wire and cancels requests on the wire. A message's own
    // trouble (the last attempt's error) stays in its receipt beside the reason.
    void abandon_all(const std::string& why) {
        auto fail_list = [&](std::vector<Entry*> list) {
            for (Entry* e : list)
                fail(*e,
                     e->maybe_delivered ? error_code(Errc::outcome_unknown)
                                        : error_code(asio::error::operation_aborted),
                     e->last_diagnostics.empty()
                         ? why
                         : why + "; last attempt: " + describe(e->last_diagnostics));
        };
        std::vector<Entry*> list(waiting_room.begin(), waiting_room.end());
        waiting_room.clear();
        fail_list(std::move(list));
        list.assign(ready.begin(), ready.end());
        ready.clear();
        fail_list(std::move(list));
        list.clear();
        for (auto& [when, e] : backoff) list.push_back(e);
        backoff.clear();
        for (Entry* e : list) release_group(*e);
        fail_list(std::move(list));
        list.clear();
        for (auto& [seq, e] : entries)  // uploads in progress
            if (e->place == Place::staging) list.push_back(e.get());
        for (Entry* e : list) release_group(*e);
        fail_list(std::move(list));
        for (auto& r : std::vector(open_requests))
            r->cancel.emit(asio::cancellation_type::terminal);
        linger_timer.cancel();
        retry_timer.cancel();
    }

    // Nothing of this destination keeps an event loop busy from here on: timers, the queue
    // lookup, pooled connections, the stager's idle connections.
    void stop_io() {
        stopped = true;
        linger_timer.cancel();
        retry_timer.cancel();
        deadline_timer.cancel();
        deadline_timer_at = Clock::time_point::max();
        resolve_cancel.emit(asio::cancellation_type::terminal);
        http.close();
        if (config.stager) config.stager->close_idle_connections();
    }

    void maybe_finish_close() {
        if (!close_handler || !entries.empty() || requests_in_flight != 0) return;
        close_timer.cancel();
        auto h = std::move(*close_handler);
        close_handler.reset();
        const error_code ec =
            close_deadline_passed ? error_code(Errc::close_timeout) : error_code();
        stop_io();
        asio::post(executor, asio::append(std::move(h), ec));
    }

    void shutdown() {
        closing = true;
        close_deadline_passed = true;
        abandon_all("the destination was destroyed");
        close_timer.cancel();
        if (close_handler) maybe_finish_close();
        stop_io();
    }
};

// ---- SqsDestination ----------------------------------------------------------------------

SqsDestination::SqsDestination(asio::any_io_executor executor, SqsDestinationConfig config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("SqsDestination: " + what);
    };
    require(config.credentials != nullptr,
            "no credentials provider (SqsDestinationConfig::credentials)");
    require(config.queue_url.empty() != config.queue_name.empty(),
            "give exactly one of queue_url and queue_name");
    require(config.max_batch_entries >= 1 && config.max_batch_entries <= sqs::max_batch_entries,
            "max_batch_entries must be 1 to 10");
    require(config.max_concurrent_requests >= 1, "max_concurrent_requests must be at least 1");
    require(config.max_in_flight_messages >= 1, "max_in_flight_messages must be at least 1");
    require(config.max_message_size <= sqs::largest_max_message_size,
            "max_message_size is above SQS's largest (1048576 bytes)");
    require(config.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
    require(config.envelope != Envelope::cloudevents_binary,
            "Envelope::cloudevents_binary is for Kafka; SQS takes Envelope::cloudevents");

    sqs::QueueAddress address;
    if (!config.queue_url.empty()) {
        std::string why;
        if (sqs::parse_queue_url(config.queue_url, address, why))
            throw std::invalid_argument("SqsDestination: queue URL \"" + config.queue_url +
                                        "\": " + why);
        if (!address.region.empty() && !detail::is_valid_region(address.region))
            throw std::invalid_argument("SqsDestination: queue URL \"" + config.queue_url +
                                        "\": the host names no valid region");
    } else {
        require(config.queue_name.find('/') == std::string::npos,
                "queue_name is a name, not a URL");
        address.name = config.queue_name;
        address.fifo = config.queue_name.ends_with(".fifo");
    }
    // Region: the configuration, the queue URL's AWS host, the endpoint's, then the
    // environment and profile as every AWS SDK reads them. Endpoint: the configuration, then
    // AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL and the profile's endpoint_url, then the queue URL.
    std::string region = config.region;
    if (!region.empty()) detail::require_valid_region(region, "SqsDestination: region");
    if (region.empty()) region = address.region;
    std::string endpoint = config.endpoint, endpoint_source = "endpoint";
    if (endpoint.empty()) {
        auto from_environment = [](auto lookup) {
            try {
                return lookup();
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument(std::string("SqsDestination: ") + e.what());
            }
        };
        const auto found =
            from_environment([] { return detail::endpoint_from_environment("SQS"); });
        endpoint = found.value;
        endpoint_source = found.source;
    }
    HttpOrigin origin = address.origin;
    if (!endpoint.empty()) {
        std::string target, why;
        if (parse_http_url(endpoint, origin, target, &why))
            throw std::invalid_argument("SqsDestination: " + endpoint_source + " \"" + endpoint +
                                        "\": " + why);
        if (region.empty()) region = sqs::region_from_host(origin.host);
    }
    if (region.empty()) {
        try {
            region = detail::region_from_environment().value;
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("SqsDestination: ") + e.what());
        }
    }
    require(!region.empty(),
            "no region: the queue URL's host does not name one, and neither SqsDestinationConfig::"
            "region, AWS_REGION, AWS_DEFAULT_REGION nor the profile's region is set");
    if (config.queue_url.empty() && endpoint.empty()) {
        origin.tls = true;
        origin.host = "sqs." + region + ".amazonaws.com";
        origin.port = 443;
    }

    auto impl = std::make_shared<Impl>(executor, std::move(config));
    impl->origin = origin;
    impl->host_header = origin.host_header();
    impl->signer.emplace(sigv4::SignerConfig{.region = region, .service = "sqs"});
    impl->queue_url = address.url;
    impl->fifo = address.fifo;
    impl_ = std::move(impl);
}

SqsDestination::~SqsDestination() {
    asio::dispatch(impl_->strand, [impl = impl_] { impl->shutdown(); });
}

SqsDestination::executor_type SqsDestination::get_executor() const noexcept {
    return impl_->executor;
}

std::string SqsDestination::queue_url() const {
    std::lock_guard lock(impl_->facts_mutex);
    return impl_->queue_url;
}

bool SqsDestination::is_fifo() const noexcept {
    return impl_->fifo;
}

DestinationStats SqsDestination::stats() const {
    return impl_->stats.snapshot();
}

void SqsDestination::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters.set(std::move(handler));
}

void SqsDestination::do_send(Message message, SendHandler handler) {
    const auto& config = impl_->config;
    const bool may_stage = config.stager && config.staging != StagingPolicy::never;
    const bool stage_all = may_stage && config.staging == StagingPolicy::always;
    if (config.envelope == Envelope::cloudevents && !stage_all)
        message.body = cloudevents_structured(config.cloudevents, message.body);
    // The same event sent again (a relay restarted) carries the same key: SQS drops the copy.
    if (impl_->fifo && message.deduplication_id.empty() && !message.idempotency_key.empty())
        message.deduplication_id = message.idempotency_key.substr(0, 128);
    const std::size_t size = sqs::message_size(message);
    std::string why;
    // A body bound for S3 may hold any bytes; everything else must suit SQS.
    error_code ec = sqs::validate_message(message, impl_->fifo, why, /*check_body=*/!stage_all);
    if (may_stage) {
        // Size is decided once the queue's limit is known: over it, the body is staged.
    } else if (!ec && size > sqs::largest_max_message_size) {
        ec = Errc::payload_too_large;
        why = "the message has " + std::to_string(size) + " bytes; SQS takes at most 1048576";
    } else if (!ec && impl_->config.max_message_size != 0 &&
               size > impl_->config.max_message_size) {
        ec = Errc::payload_too_large;
        why = "the message has " + std::to_string(size) + " bytes; the queue takes at most " +
              std::to_string(impl_->config.max_message_size);
    }
    impl_->stats.accepted(message.body.size());
    if (ec) {
        impl_->stats.failed();
        detail::post_refusal(impl_->executor, impl_->dead_letters, impl_->config.logger,
                             std::move(message), ec, std::move(why), queue_url(),
                             std::move(handler));
        return;
    }
    auto entry = std::make_unique<Entry>(std::move(message), std::move(handler));
    entry->size = size;
    entry->wire_size = size;
    asio::post(impl_->strand,
               [impl = impl_, e = std::move(entry)]() mutable { impl->accept(std::move(e)); });
}

void SqsDestination::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    asio::post(impl_->strand, [impl = impl_, deadline, h = std::move(handler)]() mutable {
        impl->close(deadline, std::move(h));
    });
}

}  // namespace outbox
