// KafkaDestination: librdkafka produces; this file keeps every accepted message accounted
// for. A message is in one place at a time: the waiting room (librdkafka's queue is full, or
// the topic is being created), staging (its body is going to S3), or produced (librdkafka owns
// it until its delivery report). State is guarded by one mutex rather than a strand so that
// the destructor can stop librdkafka without an event loop running. librdkafka's callbacks
// run only inside rd_kafka_poll, which is called with the mutex held, on the destination's
// executor after librdkafka signals that its queue has events.
#include "core/extended_client.hpp"
#include "core/trace_context.hpp"
#include "kafka/kafka_destination_impl.hpp"
#include "kafka/kafka_errors.hpp"

#include <librdkafka/rdkafka.h>
#include <boost/asio/append.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// ---- serving librdkafka's queues ---------------------------------------------------------

// Serves librdkafka's queues. Completions found here run after the mutex is released,
// dispatched to their handlers' executors (inline when that is this thread's): this runs
// on the destination's executor, never inside async_send.
void KafkaDestination::Impl::serve() {
    detail::CompletionChunks done;
    try {
        std::lock_guard lock(mutex);
        if (stopped) return;
        done.swap(spare_completions);  // its room kept from the last serve: no regrowth
        // Reset however this block is left: `done` dies with this call.
        struct StopCollecting {
            Impl& impl;
            ~StopCollecting() { impl.collecting = nullptr; }
        } stop_collecting{*this};
        collecting = &done;
        rd_kafka_poll(handles.rk, 0);
        if (handles.admin_queue) serve_admin_results();
        produce_waiting();
        maybe_finish_close();
    } catch (...) {
        done.post_and_clear(executor);  // what was gathered still completes
        throw;
    }
    done.run_and_clear(executor);
    std::lock_guard lock(mutex);
    // Room for a burst of delivery reports is kept while messages are out, up to 4096
    // completions' (a larger burst allocates chunks beyond it, but never moves one). An
    // idle destination keeps none.
    if (idle()) {
        done.release();
        spare_completions.release();
    } else if (done.chunks_kept() > spare_completions.chunks_kept()) {
        done.keep_at_most(max_kept_completion_chunks);
        spare_completions.swap(done);
    }
}

void KafkaDestination::Impl::delivered(const rd_kafka_message_t& m) {
    EntryPtr e(static_cast<Entry*>(m._private), {&entry_pool});
    --produced;
    if (m.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        refusal.reset();
        Entry& entry = *e;
        return complete(std::move(e), {}, [&](Receipt& r) {
            r.topic = config.topic;
            r.partition = m.partition;
            r.offset = m.offset;
            r.attempts = 1;
            // Moved only when set: moving an empty string still costs a call to memcpy.
            if (!entry.staged_url.empty()) r.staged_url = std::move(entry.staged_url);
            if (!entry.staged_key.empty()) r.staged_key = std::move(entry.staged_key);
        });
    }
    error_code ec = detail::classify_kafka_error(m.err, rd_kafka_message_status(&m));
    Diagnostics d = explain(m.err, ec, rd_kafka_err2str(m.err));
    fail(std::move(e), ec, std::move(d));
}

// What a failed message's receipt says, for a delivery report or a refused produce call
// alike; may refine `ec` (a purge caused by an authentication or TLS failure).
Diagnostics KafkaDestination::Impl::explain(rd_kafka_resp_err_t err, error_code& ec,
                                            std::string text) {
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
    } else if (!connection_error.empty() &&
               (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || detail::is_transient_kafka_error(err))) {
        d.message +=
            "; last connection error: " + connection_error.code + ": " + connection_error.message;
    }
    return d;
}

std::string KafkaDestination::Impl::fatal_reason() const {
    char buf[512];
    rd_kafka_fatal_error(handles.rk, buf, sizeof buf);
    return "fatal producer error (create a new destination): " + redact(buf);
}

// ---- accepting and producing -------------------------------------------------------------

EntryPtr KafkaDestination::Impl::new_entry(Message&& m, Destination::SendHandler&& h) {
    void* memory = entry_pool.allocate();
    return EntryPtr(::new (memory) Entry(std::move(m), std::move(h)), {&entry_pool});
}

void KafkaDestination::Impl::accept(EntryPtr owned) {
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
        staging.emplace(e.seq, std::move(owned));
        return stage(e);
    }
    if (waiting_room.empty() && topic_ready) {
        if (produce(owned)) return;  // produced, or failed
        stats.waited_for_room();
    }
    wait_for_room(std::move(owned));
}

// Into the waiting room at its place by seq: a staged message returns ahead of newer ones.
void KafkaDestination::Impl::wait_for_room(EntryPtr owned) {
    owned->place = Place::waiting_room;
    if (waiting_room.empty() || waiting_room.back()->seq < owned->seq)
        return waiting_room.push_back(std::move(owned));
    const auto at =
        std::upper_bound(waiting_room.begin(), waiting_room.end(), owned->seq,
                         [](std::uint64_t seq, const EntryPtr& e) { return seq < e->seq; });
    waiting_room.insert(at, std::move(owned));
}

bool KafkaDestination::Impl::should_stage(const Entry& e) const {
    if (!config.stager || config.staging == StagingPolicy::never || !e.staged_url.empty())
        return false;
    return config.staging == StagingPolicy::always || e.message.body.size() > staging_threshold;
}

void KafkaDestination::Impl::stage(Entry& e) {
    e.place = Place::staging;
    config.stager->async_stage(
        e.message.body,  // a copy: a failed message's dead letter still carries it
        asio::bind_executor(
            executor, [self = shared_from_this(), seq = e.seq](error_code ec, StagedPayload p) {
                self->staged(seq, ec, std::move(p));
            }));
}

void KafkaDestination::Impl::staged(std::uint64_t seq, error_code ec, StagedPayload payload) {
    std::lock_guard lock(mutex);
    auto it = staging.find(seq);
    if (it == staging.end()) return;  // failed meanwhile (close deadline, destructor)
    EntryPtr owned = std::move(it->second);
    staging.erase(it);
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
    if (config.envelope == Envelope::extended_client) {
        // The Extended Client's pointer, its size in a header of the same name (a reserved
        // name: refused when the message was sent).
        e.message.attributes.push_back({std::string(extended_payload_size_attribute), "Number",
                                        std::to_string(e.message.body.size())});
        e.message.body = extended_client_pointer(payload.bucket, e.staged_key);
    } else {
        e.message.body = staged_payload_message(payload.url, payload.expires_in, payload.link);
        if (config.envelope == Envelope::cloudevents)
            e.message.body = cloudevents_structured(config.cloudevents, e.message.body);
    }
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
    wait_for_room(std::move(owned));
    maybe_finish_close();
}

std::string_view KafkaDestination::Impl::key_of(const Entry& e) const {
    if (config.partitioner != KafkaPartitioner::key_hash) return {};
    return e.message.group_id;
}

// Hands the message to librdkafka. False only when its queue is full: `owned` is then
// untouched. Otherwise `owned` is released: to librdkafka, or failed.
bool KafkaDestination::Impl::produce(EntryPtr& owned) {
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

void KafkaDestination::Impl::produce_waiting() {
    // The front stays in the deque (emptied) while it is produced or failed: the waiting room
    // is not idle for the completion that may run meanwhile.
    while (!waiting_room.empty() && topic_ready) {
        bool handed_over = false;
        try {
            handed_over = produce(waiting_room.front());
        } catch (...) {
            if (!waiting_room.front()) waiting_room.pop_front();  // no empty entry stays behind
            throw;
        }
        if (!handed_over) return;  // still full
        waiting_room.pop_front();
    }
    settle_if_idle();  // the last one may have failed
}

void KafkaDestination::Impl::install_cancellation(Entry& e) {
    auto slot = asio::get_associated_cancellation_slot(e.handler);
    if (!slot.is_connected()) return;
    slot.assign([weak = weak_from_this(), seq = e.seq](asio::cancellation_type) {
        if (auto self = weak.lock()) self->cancel(seq);
    });
}

// Only a message still waiting can be cancelled: librdkafka cannot take one back.
void KafkaDestination::Impl::cancel(std::uint64_t seq) {
    std::lock_guard lock(mutex);
    const auto it = std::lower_bound(waiting_room.begin(), waiting_room.end(), seq,
                                     [](const EntryPtr& e, std::uint64_t s) { return e->seq < s; });
    if (it == waiting_room.end() || (*it)->seq != seq) return;  // produced, staging or done
    EntryPtr owned = std::move(*it);
    waiting_room.erase(it);
    Diagnostics d;
    d.message = "cancelled while waiting for room";
    fail(std::move(owned), asio::error::operation_aborted, std::move(d));
    produce_waiting();
}

// ---- completion --------------------------------------------------------------------------

template <class FillReceipt>
void KafkaDestination::Impl::complete(EntryPtr e, error_code ec, FillReceipt&& fill_receipt) {
    // Made in place, its Receipt too: each move of a Receipt moves nine strings.
    if (collecting)
        collecting->emplace_back(stats, dead_letters, config.logger, config.topic,
                                 std::move(e->handler), ec, fill_receipt, std::move(e->message),
                                 e->accepted_at);
    else
        detail::post_completion(
            executor, detail::SendCompletion(stats, dead_letters, config.logger, config.topic,
                                             std::move(e->handler), ec, fill_receipt,
                                             std::move(e->message), e->accepted_at));
    e.reset();
    settle_if_idle();
}

// Idle: nothing keeps run() going, and the entries' memory goes back (an idle destination keeps
// none of a burst's). An entry can still be held outside the containers (abandon_all fails a
// list of them): the pool gives its chunks back only once none is in use.
void KafkaDestination::Impl::settle_if_idle() {
    if (!idle()) return;
    work.reset();
    (void)entry_pool.release_if_unused();
}

void KafkaDestination::Impl::fail(EntryPtr e, error_code ec, Diagnostics d) {
    if (config.logger.enabled(LogLevel::debug))
        log(LogLevel::debug, "message " + std::to_string(e->seq) + " failed: " + ec.message() +
                                 (d.message.empty() ? "" : ": " + d.message));
    Entry& entry = *e;
    complete(std::move(e), ec, [&](Receipt& r) {
        r.topic = config.topic;
        r.attempts = entry.place == Place::produced ? 1 : 0;  // librdkafka's retries are its own
        r.diagnostics = std::move(d);
        r.staged_url = std::move(entry.staged_url);  // an object may exist though the send failed
        r.staged_key = std::move(entry.staged_key);
    });
}

// Fails what has not reached librdkafka; purges what has (its reports follow, and say why).
void KafkaDestination::Impl::abandon_all(const std::string& why, int purge_flags) {
    purge_reason = why;
    std::vector<EntryPtr> list;
    for (auto& e : waiting_room) list.push_back(std::move(e));
    waiting_room.clear();
    for (auto& [seq, e] : staging) list.push_back(std::move(e));
    staging.clear();
    std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a->seq < b->seq; });
    for (auto& e : list) {
        Diagnostics d;
        d.message = why;
        fail(std::move(e), asio::error::operation_aborted, std::move(d));
    }
    if (produced > 0) rd_kafka_purge(handles.rk, purge_flags);
}

// ---- closing -----------------------------------------------------------------------------

void KafkaDestination::Impl::close(std::chrono::milliseconds deadline, CloseHandler handler) {
    std::lock_guard lock(mutex);
    if (!close_latch.begin(std::move(handler), executor)) return;
    closing = true;
    close_timer.expires_after(deadline);
    close_timer.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec) self->close_deadline();
    });
    maybe_finish_close();
}

void KafkaDestination::Impl::close_deadline() {
    std::lock_guard lock(mutex);
    if (stopped || !close_latch.running()) return;
    close_deadline_passed = true;
    abandon_all("the close deadline passed",
                RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
    maybe_finish_close();
}

void KafkaDestination::Impl::maybe_finish_close() {
    if (!close_latch.running() || !idle()) return;
    close_timer.cancel();
    close_latch.end(close_deadline_passed ? error_code(Errc::close_timeout) : error_code(),
                    executor);
}

// The destructor's part: everything fails, librdkafka stops, no callback runs after.
void KafkaDestination::Impl::stop() {
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
        doomed = std::move(handles);
    }
    doomed.destroy();  // joins librdkafka's threads
    work.reset();
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

void KafkaDestination::do_send(Message&& message, SendHandler handler) {
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
    } else if (config.envelope == Envelope::extended_client &&
               !(why = detail::extended_client_reserved_error(message, "header")).empty()) {
        ec = Errc::invalid_message;
    } else if (detail::has_trace_context(message) &&
               (!(why = detail::trace_context_error(message)).empty() ||
                !detail::move_trace_context_into_attributes(message, why))) {
        ec = Errc::invalid_message;  // traceparent and tracestate go as headers of those names
    }
    message.aws_trace_header.clear();  // X-Ray's header has no place in a Kafka record
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
    std::lock_guard lock(impl.mutex);
    auto entry = impl.new_entry(std::move(message), std::move(handler));
    if (ec) {
        Diagnostics d;
        d.message = std::move(why);
        return impl.fail(std::move(entry), ec, std::move(d));  // not collecting: it posts
    }
    entry->wire_bytes = wire_bytes;
    if (!extra_headers.empty()) entry->extra_headers = std::move(extra_headers);
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

}  // namespace outbox
