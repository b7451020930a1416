// KafkaDestination: librdkafka produces; this file keeps every accepted message accounted
// for. A message is in one place at a time: the waiting room (librdkafka's queue is full, or
// the topic is being created), staging (its body is going to S3), or produced (librdkafka owns
// it until its delivery report). State is guarded by one mutex rather than a strand so that
// the destructor can stop librdkafka without an event loop running. librdkafka's callbacks
// run only inside rd_kafka_poll, which is called with the mutex held, on the destination's
// executor after librdkafka signals that its queue has events.
#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"
#include "core/send_completion.hpp"
#include "kafka/kafka_config.hpp"
#include "kafka/kafka_errors.hpp"

#include <outbox/kafka_destination.hpp>
#include "kafka/least_bytes.hpp"

#include <librdkafka/rdkafka.h>
#include <boost/asio/append.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

enum class Place { waiting_room, staging, produced };

struct Entry {
    // Boost 1.81's any_completion_handler move-assignment recurses forever: only ever
    // move-construct it.
    Entry(Message m, Destination::SendHandler h) : message(std::move(m)), handler(std::move(h)) {}

    std::uint64_t seq = 0;
    // Beside the body's size: a delivery report reads both, and the entry is cold by then.
    std::chrono::steady_clock::time_point accepted_at = std::chrono::steady_clock::now();
    Message message;
    Destination::SendHandler handler;
    std::vector<std::pair<std::string, std::string>> extra_headers{};  // ce_* (binary mode)
    std::size_t wire_bytes = 0;                                        // value, key and headers
    Place place = Place::waiting_room;
    std::string staged_url{};
    std::string staged_key{};
};

// librdkafka's handles, destroyed in the order that lets rd_kafka_destroy return.
struct KafkaHandles {
    rd_kafka_t* rk = nullptr;
    rd_kafka_topic_t* rkt = nullptr;
    rd_kafka_queue_t* main_queue = nullptr;
    rd_kafka_queue_t* admin_queue = nullptr;

    void destroy() {
        if (!rk) return;
        if (main_queue) rd_kafka_queue_destroy(main_queue);
        if (admin_queue) rd_kafka_queue_destroy(admin_queue);
        if (rkt) rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        *this = {};
    }
};

// What message.max.bytes and least-bytes count: value, key and headers.
std::size_t wire_size(const Message& m, std::size_t key_bytes,
                      const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    std::size_t n = m.body.size() + key_bytes;
    for (const auto& a : m.attributes) n += a.name.size() + a.value.size();
    for (const auto& [name, value] : extra_headers) n += name.size() + value.size();
    return n;
}

LogLevel log_level_of(int syslog_level) {
    if (syslog_level <= 3) return LogLevel::error;
    if (syslog_level == 4) return LogLevel::warning;
    if (syslog_level <= 6) return LogLevel::info;
    return LogLevel::debug;
}

}  // namespace

struct KafkaDestination::Impl : std::enable_shared_from_this<KafkaDestination::Impl> {
    Impl(asio::any_io_executor ex, KafkaDestinationConfig cfg)
        : executor(ex), config(std::move(cfg)), close_timer(ex) {}

    ~Impl() { handles.destroy(); }

    asio::any_io_executor executor;
    KafkaDestinationConfig config;
    std::size_t staging_threshold = 0;

    // Written once in the constructor; librdkafka's callbacks reach the Impl through these.
    KafkaHandles handles;
    detail::LeastBytesBalancer least_bytes;
    std::atomic<std::uint32_t> round_robin_next{0};
    // librdkafka signals "events queued" from its own threads; the waker posts a poll.
    struct Waker {
        std::weak_ptr<Impl> impl;
        asio::any_io_executor executor;
    };
    std::unique_ptr<Waker> waker;

    std::mutex mutex;  // guards everything below, and every call into librdkafka
    std::uint64_t next_seq = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<Entry>> held;  // waiting room, staging
    std::deque<Entry*> waiting_room;
    std::size_t produced = 0;
    bool topic_ready = true;
    std::string topic_creation_error{};
    std::optional<asio::any_io_executor> work;  // keeps run() going while messages are out

    // The last connection-level error, for messages that time out because of it.
    Diagnostics connection_error{};
    // Set by an authentication or TLS failure: messages purged because of it fail with it.
    std::optional<std::pair<error_code, Diagnostics>> refusal{};
    // Why messages were purged otherwise: "the close deadline passed", "the destination was
    // destroyed".
    std::string purge_reason = "purged";

    // Completions gathered while serve() holds the mutex, run once it is released.
    std::vector<detail::SendCompletion>* collecting = nullptr;

    bool closing = false;
    bool close_deadline_passed = false;
    bool stopped = false;  // the destructor ran: librdkafka is gone
    std::optional<CloseHandler> close_handler;
    asio::steady_timer close_timer;

    detail::DestinationCounters stats;
    detail::DeadLetterSlot dead_letters;

    // ---- librdkafka callbacks (inside rd_kafka_poll, mutex held) -------------------------

    static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
        static_cast<Impl*>(opaque)->delivered(*m);
    }

    static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
        static_cast<Impl*>(opaque)->connection_failed(static_cast<rd_kafka_resp_err_t>(err),
                                                      reason);
    }

    static void on_log(const rd_kafka_t* rk, int level, const char* facility, const char* buf) {
        auto* self = static_cast<Impl*>(rd_kafka_opaque(rk));
        const LogLevel l = log_level_of(level);
        if (!self->config.logger.enabled(l)) return;
        self->config.logger.log(l, self->redact(std::string("kafka: [") + facility + "] " + buf));
    }

    static int32_t partition_least_bytes(const rd_kafka_topic_t*, const void*, size_t,
                                         int32_t partition_cnt, void* rkt_opaque,
                                         void* msg_opaque) {
        auto* self = static_cast<Impl*>(rkt_opaque);
        const auto* e = static_cast<const Entry*>(msg_opaque);
        return self->least_bytes.pick(partition_cnt, e->wire_bytes);
    }

    static int32_t partition_round_robin(const rd_kafka_topic_t* rkt, const void*, size_t,
                                         int32_t partition_cnt, void* rkt_opaque, void*) {
        auto* self = static_cast<Impl*>(rkt_opaque);
        const std::uint32_t start = self->round_robin_next.fetch_add(1, std::memory_order_relaxed);
        for (int32_t i = 0; i < partition_cnt; ++i) {
            const auto p = static_cast<int32_t>((start + i) % partition_cnt);
            if (rd_kafka_topic_partition_available(rkt, p) == 1) return p;
        }
        return static_cast<int32_t>(start % partition_cnt);
    }

    static void on_queue_event(rd_kafka_t*, void* opaque) {
        auto* waker = static_cast<Waker*>(opaque);
        asio::post(waker->executor, [impl = waker->impl] {
            if (auto self = impl.lock()) self->serve();
        });
    }

    std::string redact(std::string text) const {
        auto hide = [&](const std::string& secret) {
            if (secret.empty()) return;
            for (auto at = text.find(secret); at != std::string::npos;
                 at = text.find(secret, at + 10))
                text.replace(at, secret.size(), "[redacted]");
        };
        hide(config.sasl_password);
        hide(config.tls.key_password);
        for (const auto& [name, value] : config.properties)
            if (is_secret_kafka_property(name)) hide(value);
        return text;
    }

    void log(LogLevel level, const std::string& message) const {
        if (config.logger.enabled(level)) config.logger.log(level, redact("kafka: " + message));
    }

    // ---- serving librdkafka's queues -----------------------------------------------------

    // Serves librdkafka's queues. Completions found here run after the mutex is released,
    // dispatched to their handlers' executors (inline when that is this thread's): this runs
    // on the destination's executor, never inside async_send.
    void serve() {
        std::vector<detail::SendCompletion> done;
        {
            std::lock_guard lock(mutex);
            if (stopped) return;
            collecting = &done;
            rd_kafka_poll(handles.rk, 0);
            if (handles.admin_queue) serve_admin_results();
            produce_waiting();
            maybe_finish_close();
            collecting = nullptr;
        }
        for (std::size_t i = 0; i < done.size(); ++i) {
            try {
                done[i].run();
            } catch (...) {
                // A handler threw: the rest still complete, later.
                for (std::size_t j = i + 1; j < done.size(); ++j)
                    asio::post(executor, [c = std::move(done[j])]() mutable { c.run(); });
                throw;
            }
        }
    }

    void serve_admin_results() {
        while (rd_kafka_event_t* ev = rd_kafka_queue_poll(handles.admin_queue, 0)) {
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT) topic_created(ev);
            rd_kafka_event_destroy(ev);
        }
    }

    void topic_created(rd_kafka_event_t* ev) {
        std::string error;
        if (rd_kafka_event_error(ev)) {
            error = rd_kafka_event_error_string(ev);
        } else {
            const auto* result = rd_kafka_event_CreateTopics_result(ev);
            size_t n = 0;
            const rd_kafka_topic_result_t** topics =
                rd_kafka_CreateTopics_result_topics(result, &n);
            for (size_t i = 0; i < n; ++i) {
                const auto err = rd_kafka_topic_result_error(topics[i]);
                if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    log(LogLevel::info, "created topic \"" + config.topic + "\" with " +
                                            std::to_string(config.partitions) + " partitions");
                } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                    log(LogLevel::debug, "topic \"" + config.topic + "\" exists");
                } else {
                    const char* why = rd_kafka_topic_result_error_string(topics[i]);
                    error =
                        std::string(rd_kafka_err2name(err)) + (why ? std::string(": ") + why : "");
                }
            }
        }
        if (!error.empty()) {
            // Producing may still work (the topic may exist and creating it be forbidden):
            // try, and say why the topic is missing if it is.
            topic_creation_error = error;
            log(LogLevel::warning, "creating topic \"" + config.topic + "\" failed: " + error);
        }
        topic_ready = true;
    }

    void connection_failed(rd_kafka_resp_err_t err, const char* reason) {
        Diagnostics d;
        d.code = rd_kafka_err2name(err);
        d.message = redact(reason ? reason : rd_kafka_err2str(err));
        if (err == RD_KAFKA_RESP_ERR__FATAL) d.message = fatal_reason();
        log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? LogLevel::warning : LogLevel::info,
            d.code + ": " + d.message);
        connection_error = d;
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL) {
            // Not worth retrying for minutes: what is queued fails now with the reason.
            const error_code ec = err == RD_KAFKA_RESP_ERR__SSL
                                      ? error_code(Errc::tls_error)
                                      : error_code(Errc::authentication_failed);
            refusal.emplace(ec, d);
            rd_kafka_purge(handles.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
        }
    }

    void delivered(const rd_kafka_message_t& m) {
        std::unique_ptr<Entry> e(static_cast<Entry*>(m._private));
        --produced;
        if (m.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            refusal.reset();
            Receipt r;
            r.topic = config.topic;
            r.partition = m.partition;
            r.offset = m.offset;
            r.attempts = 1;
            r.staged_url = std::move(e->staged_url);
            r.staged_key = std::move(e->staged_key);
            return complete(std::move(e), {}, std::move(r));
        }
        error_code ec = detail::classify_kafka_error(m.err, rd_kafka_message_status(&m));
        Diagnostics d = explain(m.err, ec, rd_kafka_err2str(m.err));
        fail(std::move(e), ec, std::move(d));
    }

    // What a failed message's receipt says, for a delivery report or a refused produce call
    // alike; may refine `ec` (a purge caused by an authentication or TLS failure).
    Diagnostics explain(rd_kafka_resp_err_t err, error_code& ec, std::string text) {
        Diagnostics d;
        d.code = rd_kafka_err2name(err);
        d.message = std::move(text);
        if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE && refusal) {
            ec = refusal->first;
            d = refusal->second;
        } else if (err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
            d.message = purge_reason + " while the message was in flight: it may have been written";
            if (!connection_error.empty())
                d.message += "; last connection error: " + connection_error.code + ": " +
                             connection_error.message;
        } else if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE) {
            d.message = purge_reason + " before the message was sent";
            if (!connection_error.empty())
                d.message += "; last connection error: " + connection_error.code + ": " +
                             connection_error.message;
        } else if (err == RD_KAFKA_RESP_ERR__FATAL) {
            d.message = fatal_reason();
        } else if (ec == Errc::topic_not_found) {
            d.message = "topic \"" + config.topic +
                        "\" does not exist and the broker did not create it" +
                        (topic_creation_error.empty()
                             ? std::string("; enable auto-creation on the broker, or set "
                                           "partitions and replication_factor")
                             : "; creating it failed: " + topic_creation_error);
        } else if (!connection_error.empty() && (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                                                 detail::is_transient_kafka_error(err))) {
            d.message += "; last connection error: " + connection_error.code + ": " +
                         connection_error.message;
        }
        return d;
    }

    std::string fatal_reason() const {
        char buf[512];
        rd_kafka_fatal_error(handles.rk, buf, sizeof buf);
        return "fatal producer error (create a new destination): " + redact(buf);
    }

    // ---- accepting and producing ---------------------------------------------------------

    void accept(std::unique_ptr<Entry> owned) {
        Entry& e = *owned;
        e.seq = next_seq++;
        if (!work) work.emplace(asio::prefer(executor, asio::execution::outstanding_work.tracked));
        if (closing) {
            Diagnostics d;
            d.message = "the destination is closed";
            return fail(std::move(owned), asio::error::operation_aborted, std::move(d));
        }
        install_cancellation(e);
        if (should_stage(e)) {
            held.emplace(e.seq, std::move(owned));
            return stage(e);
        }
        if (waiting_room.empty() && topic_ready) {
            if (produce(owned)) return;  // produced, or failed
            stats.waited_for_room();
        }
        e.place = Place::waiting_room;
        waiting_room.push_back(&e);
        held.emplace(e.seq, std::move(owned));
    }

    bool should_stage(const Entry& e) const {
        if (!config.stager || config.staging == StagingPolicy::never || !e.staged_url.empty())
            return false;
        return config.staging == StagingPolicy::always || e.message.body.size() > staging_threshold;
    }

    void stage(Entry& e) {
        e.place = Place::staging;
        config.stager->async_stage(
            e.message.body,  // a copy: a failed message's dead letter still carries it
            asio::bind_executor(
                executor, [self = shared_from_this(), seq = e.seq](error_code ec, StagedPayload p) {
                    self->staged(seq, ec, std::move(p));
                }));
    }

    void staged(std::uint64_t seq, error_code ec, StagedPayload payload) {
        std::lock_guard lock(mutex);
        auto it = held.find(seq);
        if (it == held.end()) return;  // failed meanwhile (close deadline, destructor)
        std::unique_ptr<Entry> owned = std::move(it->second);
        held.erase(it);
        Entry& e = *owned;
        if (ec) {
            Diagnostics d = std::move(payload.diagnostics);
            d.message = "staging the payload in S3 failed" +
                        (d.message.empty() ? std::string() : ": " + d.message);
            return fail(std::move(owned), ec, std::move(d));
        }
        stats.staged();
        e.staged_url = payload.url;
        e.staged_key = std::move(payload.key);
        e.message.body = staged_payload_message(payload.url, payload.expires_in);
        if (config.envelope == Envelope::cloudevents)
            e.message.body = cloudevents_structured(config.cloudevents, e.message.body);
        for (auto& [name, value] : e.extra_headers)
            if (name == "content-type") value = "application/json";  // the body is the envelope
        e.wire_bytes = wire_size(e.message, key_of(e).size(), e.extra_headers);
        if (e.wire_bytes > config.max_message_size) {
            Diagnostics d;
            d.message = "the staged-payload message has " + std::to_string(e.wire_bytes) +
                        " bytes; max_message_size is " + std::to_string(config.max_message_size);
            return fail(std::move(owned), Errc::payload_too_large, std::move(d));
        }
        if (waiting_room.empty() && topic_ready && produce(owned)) return maybe_finish_close();
        e.place = Place::waiting_room;
        waiting_room.push_back(&e);
        held.emplace(e.seq, std::move(owned));
        maybe_finish_close();
    }

    std::string_view key_of(const Entry& e) const {
        if (config.partitioner != KafkaPartitioner::key_hash) return {};
        return e.message.group_id;
    }

    // Hands the message to librdkafka. False only when its queue is full: `owned` is then
    // untouched. Otherwise `owned` is released: to librdkafka, or failed.
    bool produce(std::unique_ptr<Entry>& owned) {
        Entry& e = *owned;
        rd_kafka_headers_t* headers = nullptr;
        if (!e.message.attributes.empty() || !e.extra_headers.empty()) {
            headers = rd_kafka_headers_new(e.message.attributes.size() + e.extra_headers.size());
            for (const auto& a : e.message.attributes)
                rd_kafka_header_add(headers, a.name.data(), static_cast<ssize_t>(a.name.size()),
                                    a.value.data(), static_cast<ssize_t>(a.value.size()));
            for (const auto& [name, value] : e.extra_headers)
                rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()),
                                    value.data(), static_cast<ssize_t>(value.size()));
        }
        rd_kafka_vu_t vu[6];
        std::size_t n = 0;
        vu[n].vtype = RD_KAFKA_VTYPE_RKT;
        vu[n++].u.rkt = handles.rkt;
        // No copy: the body stays in the Entry, which lives until the delivery report.
        vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[n].u.mem.ptr = e.message.body.data();
        vu[n++].u.mem.size = e.message.body.size();
        if (const std::string_view key = key_of(e); !key.empty()) {
            vu[n].vtype = RD_KAFKA_VTYPE_KEY;
            vu[n].u.mem.ptr = const_cast<char*>(key.data());
            vu[n++].u.mem.size = key.size();
        }
        vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vu[n++].u.ptr = &e;
        if (headers) {
            vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
            vu[n++].u.headers = headers;
        }
        rd_kafka_error_t* error = rd_kafka_produceva(handles.rk, vu, n);
        if (!error) {
            e.place = Place::produced;
            ++produced;
            (void)owned.release();  // librdkafka's until on_delivery
            return true;
        }
        const rd_kafka_resp_err_t err = rd_kafka_error_code(error);
        std::string text = rd_kafka_error_string(error);
        rd_kafka_error_destroy(error);
        if (headers) rd_kafka_headers_destroy(headers);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return false;
        error_code ec = detail::classify_kafka_error(err, RD_KAFKA_MSG_STATUS_NOT_PERSISTED);
        Diagnostics d = explain(err, ec, std::move(text));
        fail(std::move(owned), ec, std::move(d));
        return true;
    }

    void produce_waiting() {
        while (!waiting_room.empty() && topic_ready) {
            Entry* e = waiting_room.front();
            auto it = held.find(e->seq);
            if (!produce(it->second)) return;  // still full
            waiting_room.pop_front();
            held.erase(it);
        }
    }

    void install_cancellation(Entry& e) {
        auto slot = asio::get_associated_cancellation_slot(e.handler);
        if (!slot.is_connected()) return;
        slot.assign([weak = weak_from_this(), seq = e.seq](asio::cancellation_type) {
            if (auto self = weak.lock()) self->cancel(seq);
        });
    }

    // Only a message still waiting can be cancelled: librdkafka cannot take one back.
    void cancel(std::uint64_t seq) {
        std::lock_guard lock(mutex);
        auto it = held.find(seq);
        if (it == held.end() || it->second->place != Place::waiting_room) return;
        waiting_room.erase(std::find(waiting_room.begin(), waiting_room.end(), it->second.get()));
        std::unique_ptr<Entry> owned = std::move(it->second);
        held.erase(it);
        Diagnostics d;
        d.message = "cancelled while waiting for room";
        fail(std::move(owned), asio::error::operation_aborted, std::move(d));
        produce_waiting();
    }

    // ---- completion ----------------------------------------------------------------------

    void complete(std::unique_ptr<Entry> e, error_code ec, Receipt receipt) {
        detail::SendCompletion c(stats, dead_letters, config.logger, config.topic,
                                 std::move(e->handler), ec, std::move(receipt),
                                 std::move(e->message), e->accepted_at);
        e.reset();
        if (collecting)
            collecting->push_back(std::move(c));
        else
            detail::post_completion(executor, std::move(c));
        if (held.empty() && produced == 0) work.reset();
    }

    void fail(std::unique_ptr<Entry> e, error_code ec, Diagnostics d) {
        if (config.logger.enabled(LogLevel::debug))
            log(LogLevel::debug, "message " + std::to_string(e->seq) + " failed: " + ec.message() +
                                     (d.message.empty() ? "" : ": " + d.message));
        Receipt r;
        r.topic = config.topic;
        r.attempts = e->place == Place::produced ? 1 : 0;  // librdkafka's retries are its own
        r.diagnostics = std::move(d);
        r.staged_url = std::move(e->staged_url);  // an object may exist though the send failed
        r.staged_key = std::move(e->staged_key);
        complete(std::move(e), ec, std::move(r));
    }

    // Fails what has not reached librdkafka; purges what has (its reports follow, and say why).
    void abandon_all(const std::string& why, int purge_flags) {
        purge_reason = why;
        waiting_room.clear();
        std::vector<std::unique_ptr<Entry>> list;
        for (auto& [seq, e] : held) list.push_back(std::move(e));
        held.clear();
        std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a->seq < b->seq; });
        for (auto& e : list) {
            Diagnostics d;
            d.message = why;
            fail(std::move(e), asio::error::operation_aborted, std::move(d));
        }
        if (produced > 0) rd_kafka_purge(handles.rk, purge_flags);
    }

    // ---- closing -------------------------------------------------------------------------

    void close(std::chrono::milliseconds deadline, CloseHandler handler) {
        std::lock_guard lock(mutex);
        if (close_handler || stopped) {  // a second close: complete it at once
            asio::post(executor, asio::append(std::move(handler),
                                              error_code(asio::error::operation_aborted)));
            return;
        }
        closing = true;
        close_handler.emplace(std::move(handler));
        close_timer.expires_after(deadline);
        close_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec) self->close_deadline();
        });
        maybe_finish_close();
    }

    void close_deadline() {
        std::lock_guard lock(mutex);
        if (stopped || !close_handler) return;
        close_deadline_passed = true;
        abandon_all("the close deadline passed", RD_KAFKA_PURGE_F_QUEUE |
                                                     RD_KAFKA_PURGE_F_INFLIGHT |
                                                     RD_KAFKA_PURGE_F_NON_BLOCKING);
        maybe_finish_close();
    }

    void maybe_finish_close() {
        if (!close_handler || !held.empty() || produced != 0) return;
        close_timer.cancel();
        auto h = std::move(*close_handler);
        close_handler.reset();
        const error_code ec =
            close_deadline_passed ? error_code(Errc::close_timeout) : error_code();
        asio::post(executor, asio::append(std::move(h), ec));
    }

    // The destructor's part: everything fails, librdkafka stops, no callback runs after.
    void stop() {
        KafkaHandles doomed;
        {
            std::lock_guard lock(mutex);
            closing = true;
            close_deadline_passed = true;
            abandon_all("the destination was destroyed",
                        RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            // Purged messages report at once; serve those reports so every handler completes.
            const auto give_up = Clock::now() + std::chrono::seconds(10);
            while (produced > 0 && Clock::now() < give_up) rd_kafka_poll(handles.rk, 10);
            rd_kafka_queue_cb_event_enable(handles.main_queue, nullptr, nullptr);
            if (handles.admin_queue)
                rd_kafka_queue_cb_event_enable(handles.admin_queue, nullptr, nullptr);
            stopped = true;
            close_timer.cancel();
            maybe_finish_close();
            doomed = handles;
            handles = {};
        }
        doomed.destroy();  // joins librdkafka's threads
        work.reset();
    }
};

// ---- construction ------------------------------------------------------------------------

namespace {

class ConfBuilder {
  public:
    ConfBuilder() : conf_(rd_kafka_conf_new()) {}
    ~ConfBuilder() {
        if (conf_) rd_kafka_conf_destroy(conf_);
    }
    ConfBuilder(const ConfBuilder&) = delete;
    ConfBuilder& operator=(const ConfBuilder&) = delete;

    void set(const std::string& name, const std::string& value) {
        char err[512];
        if (rd_kafka_conf_set(conf_, name.c_str(), value.c_str(), err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            // librdkafka's message may quote the value: not for secrets.
            throw std::invalid_argument("KafkaDestination: property \"" + name + "\": " +
                                        (is_secret_kafka_property(name) ? "refused" : err));
        }
    }
    rd_kafka_conf_t* get() noexcept { return conf_; }
    rd_kafka_conf_t* release() noexcept { return std::exchange(conf_, nullptr); }

  private:
    rd_kafka_conf_t* conf_;
};

}  // namespace

KafkaDestination::KafkaDestination(asio::any_io_executor executor, KafkaDestinationConfig config) {
    detail::kafka::check_config(config);

    auto impl = std::make_shared<Impl>(executor, std::move(config));
    const KafkaDestinationConfig& c = impl->config;
    impl->staging_threshold = c.staging_threshold ? c.staging_threshold : c.max_message_size;

    ConfBuilder conf;
    for (const auto& [name, value] : detail::kafka::producer_properties(c)) conf.set(name, value);

    rd_kafka_conf_set_opaque(conf.get(), impl.get());
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &Impl::on_error);
    rd_kafka_conf_set_log_cb(conf.get(), &Impl::on_log);

    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
    if (!rk) throw std::invalid_argument(std::string("KafkaDestination: ") + impl->redact(err));
    conf.release();  // rd_kafka_new took it
    impl->handles.rk = rk;
    rd_kafka_set_log_queue(rk, nullptr);  // logs go to the main queue

    rd_kafka_topic_conf_t* tconf = rd_kafka_default_topic_conf_dup(rk);
    if (c.partitioner == KafkaPartitioner::least_bytes)
        rd_kafka_topic_conf_set_partitioner_cb(tconf, &Impl::partition_least_bytes);
    else if (c.partitioner == KafkaPartitioner::round_robin)
        rd_kafka_topic_conf_set_partitioner_cb(tconf, &Impl::partition_round_robin);
    rd_kafka_topic_conf_set_opaque(tconf, impl.get());
    impl->handles.rkt = rd_kafka_topic_new(rk, c.topic.c_str(), tconf);
    if (!impl->handles.rkt)
        throw std::invalid_argument("KafkaDestination: topic \"" + c.topic +
                                    "\": " + rd_kafka_err2str(rd_kafka_last_error()));

    impl->waker = std::make_unique<Impl::Waker>(Impl::Waker{impl, executor});
    impl->handles.main_queue = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_cb_event_enable(impl->handles.main_queue, &Impl::on_queue_event,
                                   impl->waker.get());

    if (c.partitions > 0) {
        impl->topic_ready = false;
        impl->handles.admin_queue = rd_kafka_queue_new(rk);
        rd_kafka_queue_cb_event_enable(impl->handles.admin_queue, &Impl::on_queue_event,
                                       impl->waker.get());
        char errstr[256];
        rd_kafka_NewTopic_t* topic = rd_kafka_NewTopic_new(
            c.topic.c_str(), c.partitions, c.replication_factor, errstr, sizeof errstr);
        if (!topic) throw std::invalid_argument(std::string("KafkaDestination: ") + errstr);
        rd_kafka_AdminOptions_t* options =
            rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(options, 15000, errstr, sizeof errstr);
        rd_kafka_AdminOptions_set_operation_timeout(options, 15000, errstr, sizeof errstr);
        rd_kafka_CreateTopics(rk, &topic, 1, options, impl->handles.admin_queue);
        rd_kafka_AdminOptions_destroy(options);
        rd_kafka_NewTopic_destroy(topic);
    }
    // The queue event fires when a queue turns non-empty; rd_kafka_new may already have
    // queued log lines, so serve once now or nothing would ever wake us.
    asio::post(executor, [weak = std::weak_ptr<Impl>(impl)] {
        if (auto self = weak.lock()) self->serve();
    });
    impl_ = std::move(impl);
}

KafkaDestination::~KafkaDestination() {
    impl_->stop();
}

KafkaDestination::executor_type KafkaDestination::get_executor() const noexcept {
    return impl_->executor;
}

const std::string& KafkaDestination::topic() const noexcept {
    return impl_->config.topic;
}

DestinationStats KafkaDestination::stats() const {
    return impl_->stats.snapshot();
}

void KafkaDestination::set_dead_letter_handler(DeadLetterHandler handler) {
    impl_->dead_letters.set(std::move(handler));
}

void KafkaDestination::do_send(Message message, SendHandler handler) {
    Impl& impl = *impl_;
    const auto& config = impl.config;
    std::string why;
    error_code ec;
    if (message.delay.count() != 0) {
        ec = Errc::invalid_message;
        why = "Kafka has no delivery delay (Message::delay)";
    } else if (!message.deduplication_id.empty()) {
        ec = Errc::invalid_message;
        why = "Kafka has no deduplication ids; the idempotent producer removes its own duplicates";
    } else if (std::any_of(message.attributes.begin(), message.attributes.end(),
                           [](const MessageAttribute& a) { return a.name.empty(); })) {
        ec = Errc::invalid_message;
        why = "a message attribute (Kafka header) has no name";
    }
    const bool may_stage = config.stager && config.staging != StagingPolicy::never;
    const bool stage_all = may_stage && config.staging == StagingPolicy::always;
    if (!ec && config.envelope == Envelope::cloudevents && !stage_all)
        message.body = cloudevents_structured(config.cloudevents, message.body);
    const std::size_t key_bytes =
        config.partitioner == KafkaPartitioner::key_hash ? message.group_id.size() : 0;
    std::vector<std::pair<std::string, std::string>> extra_headers;
    if (config.envelope == Envelope::cloudevents_binary)
        extra_headers = cloudevents_kafka_headers(config.cloudevents);
    const std::size_t wire_bytes = wire_size(message, key_bytes, extra_headers);
    if (!ec && !may_stage && wire_bytes > config.max_message_size) {
        ec = Errc::payload_too_large;
        why = "the message has " + std::to_string(wire_bytes) + " bytes; max_message_size is " +
              std::to_string(config.max_message_size) + " and no stager is set";
    }
    impl.stats.accepted(message.body.size());
    auto entry = std::make_unique<Entry>(std::move(message), std::move(handler));
    if (ec) {
        Diagnostics d;
        d.message = std::move(why);
        std::lock_guard lock(impl.mutex);  // fail() expects it; not collecting, so it posts
        return impl.fail(std::move(entry), ec, std::move(d));
    }
    entry->wire_bytes = wire_bytes;
    entry->extra_headers = std::move(extra_headers);
    std::lock_guard lock(impl.mutex);
    if (impl.stopped) {
        Diagnostics d;
        d.message = "the destination was destroyed";
        return impl.fail(std::move(entry), asio::error::operation_aborted, std::move(d));
    }
    impl.accept(std::move(entry));
}

void KafkaDestination::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    impl_->close(deadline, std::move(handler));
}

bool is_secret_kafka_property(std::string_view name) {
    auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
    return has("password") || has("secret") || has("sasl.oauthbearer.config") ||
           name == "ssl.key.pem" || name == "ssl_key";
}

}  // namespace outbox
