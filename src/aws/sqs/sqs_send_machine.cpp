// sqs::SendMachine: acceptance and room, staging, time, completion, batching, retries and
// close. What replies mean is in sqs_send_machine_replies.cpp.
#include "aws/sqs/sqs_send_machine.hpp"

#include "aws/sqs/sqs_send_machine_text.hpp"
#include "core/backoff.hpp"
#include "core/message_move.hpp"
#include "core/redact.hpp"

#include <outbox/envelope.hpp>
#include <outbox/error.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>
#include <type_traits>

namespace outbox::detail::sqs {

namespace aborted = boost::asio::error;

SendMachine::SendMachine(const SqsDestinationConfig& config, std::string queue_url, bool fifo,
                         DestinationCounters& stats, std::uint32_t seed)
    : config_(config), stats_(stats), queue_url_(std::move(queue_url)), fifo_(fifo), rng_(seed) {}

SendMachine::~SendMachine() {
    not_on_the_wire_.clear();
    entries_.clear_and_dispose(std::default_delete<Entry>());
}

std::unique_ptr<SendMachine::Entry> SendMachine::new_entry() {
    if (spare_entries_.empty()) return std::make_unique<Entry>();
    auto e = std::move(spare_entries_.back());
    spare_entries_.pop_back();
    return e;
}

void SendMachine::recycle(Entry* e) noexcept {
    std::unique_ptr<Entry> owned(e);
    // An idle machine keeps none: thousands of idle destinations must not each hold on to
    // the entries of their last burst.
    if (entries_.empty()) {
        std::vector<std::unique_ptr<Entry>>().swap(spare_entries_);
        return;
    }
    if (spare_entries_.size() >= max_spare_entries) return;
    // Remade in place: an empty string costs a store or two to make and to destroy, where
    // assigning a fresh Entry moved each of its fourteen strings. The hooks are unlinked.
    // Making an empty Entry allocates nothing (its hooks are not declared noexcept, but
    // cannot throw), and this function is noexcept besides.
    std::destroy_at(owned.get());
    std::construct_at(owned.get());
    try {
        spare_entries_.push_back(std::move(owned));
    } catch (...) {  // no room for the list: the entry is freed instead
    }
}

std::string SendMachine::redact(std::string text) const {
    detail::redact(text, session_token_);
    return text;
}

// ---- acceptance ------------------------------------------------------------------------------

std::uint64_t SendMachine::accept(Message&& message, std::size_t size, Time now, Actions& out) {
    now_ = now;
    auto owned = new_entry();
    Entry* e = owned.get();
    e->seq = next_seq_++;
    detail::move_into_empty_message(e->message, std::move(message));  // a new or reset entry
    e->size = size;
    e->wire_size = size;
    e->accepted_at = now;
    if (config_.retry.message_deadline.count() > 0)
        e->deadline = now + config_.retry.message_deadline;
    const std::uint64_t seq = e->seq;
    entries_.insert(entries_.end(), *owned.release());
    not_on_the_wire_.insert(not_on_the_wire_.end(), *e);
    if (closing_) {
        fail(*e, aborted::operation_aborted, "the destination is closed", out);  // e is gone
        return seq;
    }
    if (has_room(e->size)) {
        admit(*e, out);
    } else {
        stats_.waited_for_room();
        waiting_room_.push_back(e);
    }
    return seq;
}

bool SendMachine::has_room(std::size_t size) const {
    return admitted_ == 0 || (admitted_ < config_.max_in_flight_messages &&
                              admitted_bytes_ + size <= config_.max_in_flight_bytes);
}

void SendMachine::admit(Entry& e, Actions& out) {
    ++admitted_;
    admitted_bytes_ += e.size;
    move_to(e, Place::ready);
    e.ready_at = now_;
    if (queue_state_ != QueueState::ready) {
        ready_.push_back(&e);
        if (queue_state_ == QueueState::unresolved) resolve(out);
        return;
    }
    if (should_stage(e)) return stage(e, out);
    if (!check_against_queue(e, out)) return;
    ready_.push_back(&e);
    dispatch_ready(out);
}

void SendMachine::admit_waiting(Actions& out) {
    while (!waiting_room_.empty() && has_room(waiting_room_.front()->size)) {
        Entry* e = waiting_room_.front();
        waiting_room_.pop_front();
        admit(*e, out);
    }
}

bool SendMachine::should_stage(const Entry& e) const {
    if (!config_.stager || config_.staging == StagingPolicy::never || !e.staged_url.empty())
        return false;
    if (config_.staging == StagingPolicy::always) return true;
    const std::size_t threshold =
        config_.staging_threshold ? config_.staging_threshold : max_message_size_;
    return e.wire_size > threshold;
}

void SendMachine::stage(Entry& e, Actions& out) {
    // Checked before the upload, which would leave an object nothing points at.
    if (config_.envelope == Envelope::extended_client &&
        e.message.attributes.size() >= max_attributes)
        return fail(e, Errc::invalid_message,
                    "the Extended Client pointer needs the attribute ExtendedPayloadSize, and "
                    "the message has 10 attributes, SQS's most",
                    out);
    move_to(e, Place::staging);
    hold_group(e);  // FIFO: later messages of the group wait for this one
    // A copy: should the message fail, its dead letter still carries the body.
    out.stages.push_back(Stage{e.seq, e.message.body});
}

void SendMachine::staged(std::uint64_t seq, error_code ec, StagedPayload payload, Time now,
                         Actions& out) {
    now_ = now;
    auto it = entries_.find(seq);
    if (it == entries_.end() || it->place != Place::staging) return;
    Entry& e = *it;
    release_group(e);
    if (!ec && abandoned_) ec = aborted::operation_aborted;
    if (ec) {
        e.last_diagnostics = std::move(payload.diagnostics);
        e.last_diagnostics.message =
            "staging the payload in S3 failed" + (e.last_diagnostics.message.empty()
                                                      ? std::string()
                                                      : ": " + e.last_diagnostics.message);
        return fail(e, ec, {}, out);
    }
    stats_.staged();
    e.staged_url = payload.url;
    e.staged_key = std::move(payload.key);
    if (config_.envelope == Envelope::extended_client) {
        // The pointer the Extended Client Library reads (names and room checked before).
        e.message.attributes.push_back({std::string(extended_payload_size_attribute), "Number",
                                        std::to_string(e.message.body.size())});
        e.message.body = extended_client_pointer(payload.bucket, e.staged_key);
        e.body_md5.reset();
    } else {
        std::string body = staged_payload_message(payload.url, payload.expires_in, payload.link);
        if (config_.envelope == Envelope::cloudevents)
            body = cloudevents_structured(config_.cloudevents, body);
        e.message.body = std::move(body);
        e.body_md5.reset();
    }
    e.wire_size = message_size(e.message);
    move_to(e, Place::ready);
    e.ready_at = now_;
    if (!check_against_queue(e, out)) return;
    insert_ready(e);
    dispatch_ready(out);
}

// Checks that need the queue's attributes. False when the entry was failed.
bool SendMachine::check_against_queue(Entry& e, Actions& out) {
    if (e.wire_size > max_message_size_) {
        fail(e, Errc::payload_too_large,
             "the message has " + std::to_string(e.wire_size) +
                 " bytes (body and attributes); the queue takes at most " +
                 std::to_string(max_message_size_),
             out);
        return false;
    }
    if (fifo_ && e.message.deduplication_id.empty() && content_based_dedup_ == false) {
        fail(e, Errc::invalid_message,
             "the FIFO queue has content-based deduplication off: give every message a "
             "deduplication id",
             out);
        return false;
    }
    return true;
}

// Removes a message that is not on the wire from the list it waits in.
void SendMachine::take_out(Entry& e) {
    switch (e.place) {
        case Place::request:
        case Place::leaving:
            return;
        case Place::staging:
            release_group(e);  // held while its upload runs; the upload's result is dropped
            return;
        case Place::waiting_room:
            waiting_room_.erase(std::find(waiting_room_.begin(), waiting_room_.end(), &e));
            return;
        case Place::ready:
            ready_.erase(std::find(ready_.begin(), ready_.end(), &e));
            return;
        case Place::backoff:
            for (auto b = backoff_.begin(); b != backoff_.end(); ++b)
                if (b->second == &e) {
                    backoff_.erase(b);
                    break;
                }
            release_group(e);
            return;
    }
}

void SendMachine::cancel(std::uint64_t seq, Time now, Actions& out) {
    now_ = now;
    auto it = entries_.find(seq);
    if (it == entries_.end()) return;
    Entry& e = *it;
    if (e.place == Place::request || e.place == Place::staging || e.place == Place::leaving)
        return;  // completes with its request's (or upload's) outcome, or is completing
    take_out(e);
    if (e.maybe_delivered)
        fail(e, Errc::outcome_unknown, "cancelled after a reply was lost", out);
    else
        fail(e, aborted::operation_aborted, "cancelled", out);
}

// ---- time ------------------------------------------------------------------------------------

// A message on the wire is bounded by its request's deadline; every other one by its own.
// Deadlines grow with seq, so the first such message has the earliest.
std::optional<SendMachine::Time> SendMachine::earliest_waiting_deadline() const {
    if (config_.retry.message_deadline.count() <= 0 || not_on_the_wire_.empty())
        return std::nullopt;
    return not_on_the_wire_.begin()->deadline;
}

void SendMachine::move_to(Entry& e, Place place) {
    const auto waits = [](Place p) { return p != Place::request && p != Place::leaving; };
    if (waits(e.place) && !waits(place))
        not_on_the_wire_.erase(not_on_the_wire_.iterator_to(e));
    else if (!waits(e.place) && waits(place))
        not_on_the_wire_.insert(e);
    e.place = place;
}

std::optional<SendMachine::Time> SendMachine::next_wake() const {
    if (stopped_) return std::nullopt;
    Time next = Time::max();
    if (auto d = earliest_waiting_deadline()) next = std::min(next, *d);
    if (linger_until_ != Time::max()) next = std::min(next, linger_until_);
    if (!backoff_.empty() && queue_state_ == QueueState::ready)
        next = std::min(next, backoff_.begin()->first);
    next = std::min(next, resolve_retry_at_);
    if (next == Time::max()) return std::nullopt;
    return next;
}

void SendMachine::wake(Time now, Actions& out) {
    now_ = now;
    if (stopped_) return;
    // What is past its deadline fails first: nothing late is sent or looked up for.
    if (auto d = earliest_waiting_deadline(); d && *d <= now) expire_due(out);
    if (resolve_retry_at_ <= now) {
        resolve_retry_at_ = Time::max();
        if (ready_.empty())
            queue_state_ = QueueState::unresolved;  // the next message looks it up again
        else
            resolve(out);
    }
    if (linger_until_ <= now) linger_until_ = Time::max();
    if (queue_state_ == QueueState::ready) release_backoff(now);
    dispatch_ready(out);
}

void SendMachine::expire_due(Actions& out) {
    // Every due message leaves its list before any is completed: completing one admits
    // waiting messages and may send a batch, which must not pick up another.
    std::vector<std::pair<std::uint64_t, const char*>> due;
    for (Entry& e : entries_) {
        if (e.deadline > now_) break;
        if (e.place == Place::request || e.place == Place::leaving) continue;
        due.emplace_back(e.seq, e.place == Place::waiting_room ? "waiting for room"
                                : e.place == Place::staging    ? "its payload was being staged"
                                : e.place == Place::backoff    ? "waiting to be retried"
                                : queue_state_ != QueueState::ready
                                    ? "the queue was being looked up"
                                    : "waiting to be sent");
        take_out(e);
        move_to(e, Place::leaving);
    }
    for (const auto& [seq, where] : due) {
        const auto it = entries_.find(seq);
        if (it == entries_.end()) continue;
        Entry& e = *it;
        fail(e, e.maybe_delivered ? error_code(Errc::outcome_unknown) : error_code(Errc::timeout),
             with_last_attempt("the message deadline (" +
                                   seconds_text(config_.retry.message_deadline) +
                                   ") passed while " + where,
                               e.last_diagnostics),
             out);
    }
}

// ---- completion ------------------------------------------------------------------------------

void SendMachine::complete(Entry& e, error_code ec, Receipt&& receipt, Actions& out) {
    const bool was_admitted = e.place != Place::waiting_room;
    if (was_admitted) {
        --admitted_;
        admitted_bytes_ -= e.size;
    }
    receipt.attempts = e.attempts;
    // Built in place, member by member: Clang 14 has no parenthesized aggregate initialization.
    Completion& c = out.completions.emplace_back();
    c.seq = e.seq;
    c.ec = ec;
    detail::move_into_empty_receipt(c.receipt, std::move(receipt));
    // A failure's message goes whole (a dead letter carries it); a delivery's only needs its
    // body, whose size is counted, and the rest goes with the entry.
    if (ec)
        detail::move_into_empty_message(c.message, std::move(e.message));
    else
        c.message.body = std::move(e.message.body);
    c.accepted_at = e.accepted_at;
    if (e.not_on_the_wire.is_linked()) not_on_the_wire_.erase(not_on_the_wire_.iterator_to(e));
    entries_.erase_and_dispose(entries_.iterator_to(e), [this](Entry* gone) { recycle(gone); });
    // e is gone from here on
    if (was_admitted) admit_waiting(out);
    maybe_finish_close(out);
}

void SendMachine::fail(Entry& e, error_code ec, std::string why, Actions& out) {
    if (!session_token_.empty()) {
        why = redact(std::move(why));
        e.last_diagnostics.message = redact(std::move(e.last_diagnostics.message));
        e.last_diagnostics.service_message = redact(std::move(e.last_diagnostics.service_message));
        e.last_diagnostics.code = redact(std::move(e.last_diagnostics.code));
    }
    if (config_.logger.enabled(LogLevel::debug))
        config_.logger.log(LogLevel::debug, "sqs: message " + std::to_string(e.seq) + " failed: " +
                                                ec.message() + (why.empty() ? "" : ": " + why));
    Receipt r;
    r.diagnostics = std::move(e.last_diagnostics);
    if (!why.empty()) r.diagnostics.message = std::move(why);
    r.staged_url = std::move(e.staged_url);  // an object may exist even though the send failed
    r.staged_key = std::move(e.staged_key);
    complete(e, ec, std::move(r), out);
}

void SendMachine::fail_with_last(Entry& e, error_code ec, const Diagnostics& d, Actions& out) {
    e.last_diagnostics = d;
    fail(e, ec, {}, out);
}

// ---- calls ---------------------------------------------------------------------------------

std::uint64_t SendMachine::start_call(CallKind kind, const char* action, std::string body,
                                      Time deadline, std::shared_ptr<Request> request,
                                      Actions& out) {
    if (!request) request = std::make_shared<Request>();
    request->kind = kind;
    const std::uint64_t id = next_call_++;
    calls_.emplace(id, std::move(request));
    out.calls.push_back(Call{id, action, std::move(body), deadline});
    return id;
}

void SendMachine::call_answered(std::uint64_t call, error_code ec, HttpResponse res, Time now,
                                Actions& out) {
    now_ = now;
    auto it = calls_.find(call);
    if (it == calls_.end()) return;
    const std::shared_ptr<Request> request = std::move(it->second);
    calls_.erase(it);
    switch (request->kind) {
        case CallKind::get_queue_url:
            on_get_queue_url(ec, res, out);
            break;
        case CallKind::get_queue_attributes:
            on_get_queue_attributes(ec, res, out);
            break;
        case CallKind::send:
            on_send_response(*request, ec, res, out);
            break;
    }
    maybe_finish_close(out);
}

// ---- batching --------------------------------------------------------------------------------

bool SendMachine::group_busy(const Entry& e) const {
    return fifo_ && !e.message.group_id.empty() && busy_groups_.count(e.message.group_id) != 0;
}

void SendMachine::hold_group(const Entry& e) {
    if (fifo_ && !e.message.group_id.empty()) ++busy_groups_[e.message.group_id];
}

void SendMachine::release_group(const Entry& e) {
    if (!fifo_ || e.message.group_id.empty()) return;
    auto it = busy_groups_.find(e.message.group_id);
    if (it != busy_groups_.end() && --it->second == 0) busy_groups_.erase(it);
}

// Picks the next batch from the ready queue without taking it: in seq order, skipping FIFO
// groups that have a message on the wire or backing off.
SendMachine::Picked SendMachine::pick_batch(bool& full) const {
    Picked picked;
    std::size_t bytes = 0;
    const std::size_t max_entries =
        std::clamp<std::size_t>(config_.max_batch_entries, 1, max_batch_entries);
    full = false;
    for (std::size_t i = 0; i < ready_.size(); ++i) {
        const Entry& e = *ready_[i];
        if (group_busy(e)) continue;
        if (e.solo) {
            if (picked.empty()) {
                picked.push_back(i);
                full = true;
                return picked;
            }
            continue;
        }
        if (bytes + e.wire_size > max_message_size_) {
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

void SendMachine::dispatch_ready(Actions& out) {
    if (queue_state_ != QueueState::ready || stopped_) return;
    while (requests_in_flight_ < config_.max_concurrent_requests && !ready_.empty()) {
        bool full = false;
        auto picked = pick_batch(full);
        if (picked.empty()) return;
        if (!full && !closing_ && config_.linger.count() > 0) {
            const auto due = ready_.front()->ready_at +
                             std::chrono::duration_cast<Clock::duration>(config_.linger);
            if (now_ < due) {
                linger_until_ = std::min(linger_until_, due);
                return;
            }
        }
        auto request = std::make_shared<Request>();
        request->entries.reserve(picked.size());
        for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
            Entry* e = ready_[*it];
            ready_.erase(ready_.begin() + static_cast<std::ptrdiff_t>(*it));
            request->entries.push_back(e);
        }
        std::reverse(request->entries.begin(), request->entries.end());
        send_batch(std::move(request), out);
    }
}

void SendMachine::send_batch(std::shared_ptr<Request> request, Actions& out) {
    std::string body;
    std::size_t reserve = 256;
    for (const Entry* e : request->entries) reserve += e->wire_size + e->wire_size / 8 + 128;
    body.reserve(reserve);
    request->batch = request->entries.size() > 1;
    for (Entry* e : request->entries) {
        move_to(*e, Place::request);
        if (++e->attempts > 1) stats_.retried();
        hold_group(*e);
    }
    if (request->batch) {
        write_batch_begin(body, queue_url_);
        for (std::size_t i = 0; i < request->entries.size(); ++i)
            write_batch_entry(body, i, request->entries[i]->message, i == 0);
        write_batch_end(body);
    } else {
        write_send_message(body, queue_url_, request->entries[0]->message);
    }
    ++requests_in_flight_;
    stats_.request();
    // Never past the earliest deadline among its messages.
    Time earliest = Time::max();
    for (const Entry* e : request->entries) earliest = std::min(earliest, e->deadline);
    const char* action = request->batch ? "SendMessageBatch" : "SendMessage";
    start_call(CallKind::send, action, std::move(body), earliest, std::move(request), out);
}

// ---- retries ---------------------------------------------------------------------------------

std::chrono::milliseconds SendMachine::backoff_delay(std::uint32_t attempts,
                                                     const HttpResponse* res) {
    std::optional<std::chrono::milliseconds> asked;
    if (res != nullptr)
        asked = parse_retry_after(res->header("Retry-After"), std::chrono::system_clock::now());
    return detail::backoff_delay(config_.retry, attempts, rng_, asked);
}

// An attempt failed: another one later, or the message fails. A message an earlier attempt
// may have delivered fails with outcome_unknown unless the service refused it.
void SendMachine::retry_or_fail(Entry& e, error_code ec, const Diagnostics& d,
                                const HttpResponse* res, Actions& out) {
    e.last_diagnostics = d;
    const auto final_error = [&] {
        return e.maybe_delivered && (is_retryable(ec) || ec == aborted::operation_aborted)
                   ? error_code(Errc::outcome_unknown)
                   : ec;
    };
    if (!is_retryable(ec) || abandoned_) return fail(e, final_error(), {}, out);
    if (e.attempts >= config_.retry.max_attempts)
        return fail(e, final_error(),
                    "gave up after " + std::to_string(e.attempts) +
                        " attempts; last attempt: " + describe(d),
                    out);
    const auto delay = backoff_delay(e.attempts, res);
    const auto when = now_ + delay;
    if (when >= e.deadline)
        return fail(e, final_error(),
                    "the message deadline (" + seconds_text(config_.retry.message_deadline) +
                        ") leaves no time for another attempt; last attempt: " + describe(d),
                    out);
    move_to(e, Place::backoff);
    hold_group(e);
    backoff_.emplace(when, &e);
}

// A retry without waiting (clock corrected, or batch split); still counts as an attempt.
void SendMachine::requeue_now(Entry& e, error_code ec, const Diagnostics& d, Actions& out) {
    e.last_diagnostics = d;
    if (e.attempts >= config_.retry.max_attempts || now_ >= e.deadline)
        return fail(e, e.maybe_delivered ? error_code(Errc::outcome_unknown) : ec, {}, out);
    insert_ready(e);
}

void SendMachine::insert_ready(Entry& e) {
    move_to(e, Place::ready);
    e.ready_at = now_;
    auto pos = std::upper_bound(ready_.begin(), ready_.end(), e.seq,
                                [](std::uint64_t seq, const Entry* x) { return seq < x->seq; });
    ready_.insert(pos, &e);
}

// Backoff due by `until` back to the ready queue.
void SendMachine::release_backoff(Time until) {
    while (!backoff_.empty() && backoff_.begin()->first <= until) {
        Entry* e = backoff_.begin()->second;
        backoff_.erase(backoff_.begin());
        release_group(*e);
        insert_ready(*e);
    }
}

// ---- close -----------------------------------------------------------------------------------

void SendMachine::close(Time now, Actions& out) {
    now_ = now;
    if (closing_) return;
    closing_ = true;
    linger_until_ = Time::max();
    if (queue_state_ == QueueState::ready) {
        release_backoff(Time::max());  // what backs off goes at once
        dispatch_ready(out);
    }
    maybe_finish_close(out);
}

// Fails everything not on the wire and cancels the calls on the wire. A message's own trouble
// (the last attempt's error) stays in its receipt beside the reason.
void SendMachine::abandon(const std::string& why, Actions& out) {
    if (abandoned_) return;
    closing_ = true;
    abandoned_ = true;
    abandon_reason_ = why;
    linger_until_ = Time::max();
    resolve_retry_at_ = Time::max();
    auto fail_list = [&](std::vector<Entry*> list) {
        for (Entry* e : list) fail_abandoned(*e, out);
    };
    // Each list is emptied before its messages complete: a completion admits from the
    // waiting room, which must find nothing to admit.
    std::vector<Entry*> list(waiting_room_.begin(), waiting_room_.end());
    waiting_room_.clear();
    fail_list(std::move(list));
    list.assign(ready_.begin(), ready_.end());
    ready_.clear();
    fail_list(std::move(list));
    list.clear();
    for (auto& [when, e] : backoff_) list.push_back(e);
    backoff_.clear();
    for (Entry* e : list) release_group(*e);
    fail_list(std::move(list));
    list.clear();
    for (Entry& e : entries_)  // uploads in progress
        if (e.place == Place::staging) list.push_back(&e);
    for (Entry* e : list) release_group(*e);
    fail_list(std::move(list));
    for (auto& [id, request] : calls_) out.cancel_calls.push_back(id);
}

// A message abandon() leaves behind: its reason, and what its last attempt met.
void SendMachine::fail_abandoned(Entry& e, Actions& out) {
    fail(e,
         e.maybe_delivered ? error_code(Errc::outcome_unknown)
                           : error_code(aborted::operation_aborted),
         with_last_attempt(abandon_reason_, e.last_diagnostics), out);
}

void SendMachine::maybe_finish_close(Actions& out) {
    if (!closing_ || stopped_ || !entries_.empty() || requests_in_flight_ != 0) return;
    stopped_ = true;
    out.closed = abandoned_ ? error_code(Errc::close_timeout) : error_code();
}

}  // namespace outbox::detail::sqs
