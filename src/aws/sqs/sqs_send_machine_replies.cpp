// What replies mean for sqs::SendMachine: the queue lookup's (GetQueueUrl, GetQueueAttributes)
// and a send's (SendMessage, SendMessageBatch: partial failures, digests, a batch refused for
// one entry, a clock the service says is wrong).
#include "aws/sqs/sqs_send_machine.hpp"
#include "core/md5_lanes.hpp"

#include "aws/sqs/sqs_send_machine_text.hpp"

#include <outbox/error.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>

namespace outbox::detail::sqs {

namespace aborted = boost::asio::error;

// ---- the queue lookup --------------------------------------------------------------------------

void SendMachine::resolve(Actions& out) {
    if (stopped_ || abandoned_) return;
    queue_state_ = QueueState::resolving;
    // The lookup is bounded by the deadline of the oldest message waiting for it.
    const auto deadline = ready_.empty() ? Time::max() : ready_.front()->deadline;
    if (queue_url_.empty()) {
        std::string body;
        write_get_queue_url(body, config_.queue_name);
        start_call(CallKind::get_queue_url, "GetQueueUrl", std::move(body), deadline, nullptr, out);
        return;
    }
    if (config_.max_message_size != 0 && !fifo_) return resolved(config_.max_message_size, out);
    std::string body;
    write_get_queue_attributes(body, queue_url_);
    start_call(CallKind::get_queue_attributes, "GetQueueAttributes", std::move(body), deadline,
               nullptr, out);
}

// Tries the lookup again after a backoff, or fails everything waiting when it cannot work.
void SendMachine::resolve_failed(error_code ec, const Diagnostics& d, const HttpResponse* res,
                                 Actions& out) {
    ++resolve_attempts_;
    if (is_retryable(ec) && resolve_attempts_ < config_.retry.max_attempts && !abandoned_ &&
        !stopped_ && !ready_.empty()) {
        const auto delay = backoff_delay(resolve_attempts_, res);
        config_.logger.log(LogLevel::info, "sqs: looking up the queue failed (" +
                                               redact(describe(d)) + "), trying again in " +
                                               std::to_string(delay.count()) + " ms");
        resolve_retry_at_ = now_ + delay;
        return;
    }
    if (!stopped_)
        config_.logger.log(LogLevel::warning,
                           "sqs: cannot look up the queue: " + redact(describe(d)));
    queue_state_ = QueueState::unresolved;
    resolve_attempts_ = 0;
    auto pending = std::move(ready_);
    ready_.clear();
    Diagnostics lookup = d;
    lookup.message = "looking up the queue failed: " + describe(d);
    for (Entry* e : pending) fail_with_last(*e, ec, lookup, out);
}

void SendMachine::on_get_queue_url(error_code ec, HttpResponse& res, Actions& out) {
    Diagnostics d = ec ? transport_diagnostics(ec, res) : Diagnostics{};
    if (!ec && res.status != 200) ec = parse_error_response(res, d);
    std::string url;
    if (!ec && parse_get_queue_url_result(res.body, url)) {
        ec = Errc::malformed_response;
        d.message = "unreadable GetQueueUrl reply";
    }
    QueueAddress address;
    std::string why;
    if (!ec && parse_queue_url(url, address, why)) {
        ec = Errc::malformed_response;
        d.message = "GetQueueUrl returned \"" + url + "\": " + why;
    }
    if (ec) return resolve_failed(ec, d, &res, out);
    queue_url_ = std::move(url);
    fifo_ = address.fifo;
    resolve(out);
}

void SendMachine::on_get_queue_attributes(error_code ec, HttpResponse& res, Actions& out) {
    Diagnostics d = ec ? transport_diagnostics(ec, res) : Diagnostics{};
    if (!ec && res.status != 200) ec = parse_error_response(res, d);
    std::size_t size = 0;
    bool content_dedup = false;
    if (!ec && parse_get_queue_attributes_result(res.body, size, content_dedup)) {
        ec = Errc::malformed_response;
        d.message = "unreadable GetQueueAttributes reply";
    }
    if (ec && (is_retryable(ec) || is_missing_queue_error(d)))
        return resolve_failed(ec, d, &res, out);
    if (ec) {
        // Send-only credentials often lack sqs:GetQueueAttributes: go on with the default.
        config_.logger.log(LogLevel::info, "sqs: GetQueueAttributes refused (" +
                                               (d.code.empty() ? ec.message() : d.code) +
                                               "); assuming the default 256 KiB limit");
        return resolved(
            config_.max_message_size ? config_.max_message_size : default_max_message_size, out);
    }
    content_based_dedup_ = content_dedup;
    if (config_.max_message_size != 0) size = config_.max_message_size;
    resolved(size ? std::min(size, largest_max_message_size) : default_max_message_size, out);
}

void SendMachine::resolved(std::size_t limit, Actions& out) {
    max_message_size_ = limit;
    queue_state_ = QueueState::ready;
    resolve_attempts_ = 0;
    auto pending = std::move(ready_);
    ready_.clear();
    for (Entry* e : pending) {
        if (should_stage(*e))
            stage(*e, out);
        else if (check_against_queue(*e, out))
            ready_.push_back(e);
    }
    dispatch_ready(out);
}

// ---- sends --------------------------------------------------------------------------------

void SendMachine::on_send_response(Request& request, error_code ec, HttpResponse& res,
                                   Actions& out) {
    --requests_in_flight_;
    for (Entry* e : request.entries) release_group(*e);
    // Most replies complete every entry: room for them at once, not by doubling.
    out.completions.reserve(out.completions.size() + request.entries.size());

    if (ec && abandoned_) {
        // Cancelled by abandon() (before it was sent, or after: then it may have been stored):
        // the same account as the messages that were waiting, with this attempt's error when
        // there was one.
        for (Entry* e : request.entries) {
            if (ec != aborted::operation_aborted)
                e->last_diagnostics = transport_diagnostics(ec, res);
            if (ec == Errc::outcome_unknown) e->maybe_delivered = true;
            fail_abandoned(*e, out);
        }
        return;
    }
    if (ec) {
        Diagnostics d = transport_diagnostics(ec, res);
        if (ec == aborted::operation_aborted) d.message = "not sent: the destination was closing";
        for (Entry* e : request.entries) {
            if (ec == Errc::outcome_unknown) e->maybe_delivered = true;
            retry_or_fail(*e, ec, d, nullptr, out);
        }
        return dispatch_ready(out);
    }
    if (res.status != 200) {
        Diagnostics d;
        const error_code err = parse_error_response(res, d);
        if (is_clock_skew_error(d) && correct_clock(res)) {
            for (Entry* e : request.entries) requeue_now(*e, err, d, out);
            return dispatch_ready(out);
        }
        if (err == Errc::service_error && request.entries.size() > 1 &&
            is_batch_refusal_of_one_entry(d.code)) {
            // One bad entry can refuse a whole batch: send each alone to find it.
            for (Entry* e : request.entries) {
                e->solo = true;
                requeue_now(*e, err, d, out);
            }
            return dispatch_ready(out);
        }
        for (Entry* e : request.entries) retry_or_fail(*e, err, d, &res, out);
        return dispatch_ready(out);
    }

    SendResult result;
    const error_code parse_ec = request.batch ? parse_send_message_batch_result(res.body, result)
                                              : parse_send_message_result(res.body, result);
    std::vector<bool> settled(request.entries.size(), false);
    if (!parse_ec) {
        const std::string_view request_id = res.header("x-amzn-RequestId");
        // The bodies to check, hashed together (MD5 in SIMD lanes: most of a batch's cost) when
        // the reply carries their MD5s.
        const std::size_t n = request.entries.size();
        const bool hashed = n <= max_batch_entries &&
                            std::any_of(result.successful.begin(), result.successful.end(),
                                        [](const auto& ok) { return !ok.md5_of_body.empty(); });
        if (hashed) hash_bodies(request.entries);
        for (auto& ok : result.successful) {
            if (ok.id >= n || settled[ok.id]) continue;
            settled[ok.id] = true;
            Entry& e = *request.entries[ok.id];
            const Md5Hex* body_md5 = e.body_md5 ? &*e.body_md5 : nullptr;
            deliver(e, ok, request_id, body_md5, out);
        }
        for (auto& bad : result.failed) {
            if (bad.id >= request.entries.size() || settled[bad.id]) continue;
            settled[bad.id] = true;
            Entry& e = *request.entries[bad.id];
            Diagnostics d;
            d.http_status = res.status;
            d.code = bad.code;
            d.message = bad.message;
            d.service_message = bad.message;
            d.request_id = std::string(request_id);
            d.sender_fault = bad.sender_fault;
            if (bad.sender_fault)
                fail_with_last(e, Errc::service_error, d, out);
            else
                retry_or_fail(
                    e, is_throttling_code(bad.code) ? Errc::throttled : Errc::service_unavailable,
                    d, nullptr, out);
        }
    }
    // Entries the reply does not mention (or an unreadable reply): the server may have stored
    // them, so they count as lost replies.
    Diagnostics d;
    d.http_status = res.status;
    d.request_id = std::string(res.header("x-amzn-RequestId"));
    d.message = parse_ec ? "unreadable SendMessage reply: it may or may not have been stored"
                         : "the reply does not mention this message: it may or may not have "
                           "been stored";
    for (std::size_t i = 0; i < request.entries.size(); ++i) {
        if (settled[i]) continue;
        request.entries[i]->maybe_delivered = true;
        retry_or_fail(*request.entries[i], Errc::outcome_unknown, d, nullptr, out);
    }
    dispatch_ready(out);
}

void SendMachine::hash_bodies(const std::vector<Entry*>& entries) {
    // Sixteen lanes cost what ten do: a batch's ten leave six for the next ready bodies, whose
    // replies then find them hashed. Ready bodies are final once the queue is known (checked
    // against its limit, staged or not).
    constexpr std::size_t most = 16;
    std::array<Entry*, most> whose;
    std::array<std::string_view, most> bodies;
    std::size_t n = 0;
    for (Entry* e : entries)
        if (!e->body_md5 && n < most) {
            whose[n] = e;
            bodies[n++] = e->message.body;
        }
    if (n == 0) return;
    const std::size_t width = detail::md5_lane_width();
    const std::size_t fill = width > 1 ? std::min(most, (n + width - 1) / width * width) : n;
    // A bounded look: FIFO groups held back can leave a long run of hashed bodies in front,
    // and walking past it on every reply would cost more than the lanes save.
    constexpr std::size_t look_ahead = 64;
    if (queue_state_ == QueueState::ready)
        for (std::size_t i = 0; i < ready_.size() && i < look_ahead && n < fill; ++i)
            if (Entry* next = ready_[i]; !next->body_md5) {
                whose[n] = next;
                bodies[n++] = next->message.body;
            }
    std::array<Md5Hex, most> digests;
    md5_of_bodies(std::span(bodies).first(n), std::span(digests).first(n));
    for (std::size_t i = 0; i < n; ++i) whose[i]->body_md5 = digests[i];
}

void SendMachine::deliver(Entry& e, SentEntry& sent, std::string_view request_id,
                          const Md5Hex* body_md5, Actions& out) {
    // What the failures below report; built only for them (a request id costs an allocation).
    auto diagnostics = [&] {
        Diagnostics d;
        d.http_status = 200;
        d.request_id = std::string(request_id);
        return d;
    };
    // A reply we cannot check is no proof that SQS stored what we sent: as if it were lost.
    const bool want_attributes_md5 = !e.message.attributes.empty();
    if (config_.require_md5 &&
        (sent.md5_of_body.empty() || (want_attributes_md5 && sent.md5_of_attributes.empty()))) {
        Diagnostics d = diagnostics();
        d.message = std::string("the reply has no ") +
                    (sent.md5_of_body.empty() ? "MD5OfMessageBody" : "MD5OfMessageAttributes") +
                    " to check (message id " + sent.message_id +
                    "): it may or may not have been stored";
        e.maybe_delivered = true;
        return retry_or_fail(e, Errc::malformed_response, d, nullptr, out);
    }
    bool body_ok = true;
    if (!sent.md5_of_body.empty()) {
        const Md5Hex md5 = body_md5 ? *body_md5 : md5_of_body(e.message.body);
        body_ok = std::string_view(md5.data(), md5.size()) == sent.md5_of_body;
    }
    bool attributes_ok = true;
    if (want_attributes_md5 && !sent.md5_of_attributes.empty()) {
        const auto attr_md5 = md5_of_attributes(e.message.attributes);
        attributes_ok =
            std::string_view(attr_md5.data(), attr_md5.size()) == sent.md5_of_attributes;
    }
    if (!body_ok || !attributes_ok) {
        Diagnostics d = diagnostics();
        d.message = std::string(body_ok ? "MD5OfMessageAttributes" : "MD5OfMessageBody") +
                    " does not match what was sent; message id " + sent.message_id;
        return fail_with_last(e, Errc::checksum_mismatch, d, out);
    }
    Receipt r;
    r.message_id = std::move(sent.message_id);
    r.sequence_number = std::move(sent.sequence_number);
    r.staged_url = std::move(e.staged_url);
    r.staged_key = std::move(e.staged_key);
    r.diagnostics = std::move(e.last_diagnostics);
    if (!session_token_.empty()) {
        r.diagnostics.message = redact(std::move(r.diagnostics.message));
        r.diagnostics.service_message = redact(std::move(r.diagnostics.service_message));
    }
    complete(e, {}, std::move(r), out);
}

bool SendMachine::correct_clock(const HttpResponse& res) {
    if (!clock_.correct(res.header("Date"))) return false;
    config_.logger.log(
        LogLevel::warning,
        "sqs: the local clock is off by " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::seconds>(clock_.offset()).count()) +
            " s from the server's; signing with the server's time");
    return true;
}

}  // namespace outbox::detail::sqs
