// SqsDestination: the I/O shell around sqs::SendMachine (sqs_send_machine.hpp), which decides
// everything; this file signs and sends the calls it asks for, stages the bodies it names,
// keeps one timer at the time it next needs, and completes the handlers of the messages it is
// done with. Everything runs on one strand.
#include <outbox/aws_environment.hpp>
#include "aws/sqs/sqs_send_machine.hpp"
#include "core/close_latch.hpp"
#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"
#include "core/extended_client.hpp"
#include "core/md5_lanes.hpp"
#include "core/message_move.hpp"
#include "core/redact.hpp"
#include "core/send_completion.hpp"
#include "core/strand_executor.hpp"
#include "core/thrown_text.hpp"
#include "core/trace_context.hpp"

#include <outbox/envelope.hpp>
#include <outbox/sigv4.hpp>
#include <outbox/sqs_destination.hpp>
#include "aws/sqs/sqs_protocol.hpp"

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
#include <memory_resource>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outbox {

namespace asio = boost::asio;
namespace sqs = detail::sqs;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

struct SqsDestination::Impl : std::enable_shared_from_this<SqsDestination::Impl> {
    using Strand = asio::any_io_executor;  // detail::make_strand_executor says why
    using Actions = sqs::SendMachine::Actions;

    Impl(asio::any_io_executor ex, SqsDestinationConfig cfg)
        : executor(ex),
          strand(detail::make_strand_executor(ex)),
          config(std::move(cfg)),
          http(ex, config.http),
          wake_timer(strand),
          close_timer(strand) {}

    asio::any_io_executor executor;
    Strand strand;
    SqsDestinationConfig config;
    HttpClient http;
    std::optional<sigv4::Signer> signer;
    HttpOrigin origin;
    std::string host_header;
    detail::DestinationCounters stats;
    detail::DeadLetterSlot dead_letters;
    std::optional<sqs::SendMachine> machine;  // made with the queue facts the constructor knows

    // Queue facts; written on the strand, read by queue_url()/is_fifo() from anywhere.
    mutable std::mutex facts_mutex;
    std::string queue_url;
    std::atomic<bool> fifo{false};

    // By message seq. Its nodes come from a pool (kept for the next messages while any are in
    // flight, released when none are) instead of one allocation and free per message.
    std::pmr::unsynchronized_pool_resource handler_nodes;
    std::pmr::unordered_map<std::uint64_t, Destination::SendHandler> handlers{&handler_nodes};
    // Calls on the wire (or waiting for credentials), by the machine's call id.
    std::unordered_map<std::uint64_t, std::shared_ptr<asio::cancellation_signal>> calls;
    asio::steady_timer wake_timer;
    Clock::time_point wake_at = Clock::time_point::max();
    detail::CloseLatch close_latch;
    asio::steady_timer close_timer;
    bool stopped = false;  // nothing of it keeps an event loop busy any more

    // Sends on their way to the strand. One job drains all that arrived meanwhile: a post per
    // message (an allocation, a trip through the strand and the type-erased executor) cost
    // more than the machine's own work for it.
    struct PendingSend {
        PendingSend(Message&& m, std::size_t s, Destination::SendHandler&& h)
            : size(s), handler(std::move(h)) {
            detail::move_into_empty_message(message, std::move(m));
        }
        Message message;
        std::size_t size;
        Destination::SendHandler handler;  // moved by construction only (Boost 1.81)
    };
    std::mutex inbox_mutex;
    std::vector<PendingSend> inbox;
    bool drain_posted = false;

    // From any thread.
    void enqueue(Message&& message, std::size_t size, Destination::SendHandler handler) {
        bool post = false;
        {
            std::lock_guard lock(inbox_mutex);
            inbox.emplace_back(std::move(message), size, std::move(handler));
            post = !std::exchange(drain_posted, true);
        }
        if (post) asio::post(strand, [self = shared_from_this()] { self->drain_inbox(); });
    }

    // On the strand. Everything enqueued before this runs is accepted, in order; close and
    // shutdown call it first, so no send made before them is left behind.
    void drain_inbox() {
        accept_resumed();  // what an exception interrupted comes before anything newer
        {
            std::lock_guard lock(inbox_mutex);
            resume.swap(inbox);  // `resume` is empty: the inbox keeps its room for the next burst
            drain_posted = false;
        }
        accept_resumed();
    }

    // The sends being accepted, on the strand. Should accept throw (bad_alloc), the rest stay
    // here with their place kept, and a new job goes on with them.
    std::vector<PendingSend> resume;
    std::size_t resume_at = 0;

    void accept_resumed() {
        while (resume_at < resume.size()) {
            PendingSend& p = resume[resume_at++];
            try {
                accept(std::move(p.message), p.size, std::move(p.handler));
            } catch (...) {
                asio::post(strand, [self = shared_from_this()] { self->drain_inbox(); });
                throw;
            }
        }
        resume.clear();
        resume_at = 0;
        if (resume.capacity() > 4096) std::vector<PendingSend>().swap(resume);  // not a burst's
    }

    // For close and shutdown, which must go on: sends an exception left behind are taken by
    // the job it posted, and fail as sent to a closed destination.
    void drain_quietly() noexcept {
        try {
            drain_inbox();
        } catch (...) {
        }
    }

    // ---- events into the machine, actions out of it ----------------------------------------

    void accept(Message&& message, std::size_t size, Destination::SendHandler handler) {
        Actions out;
        const auto seq = machine->accept(std::move(message), size, Clock::now(), out);
        // Moved in by construction only: Boost 1.81's any_completion_handler move-assignment
        // recurses forever.
        auto placed = handlers.emplace(seq, std::move(handler)).first;
        install_cancellation(seq, placed->second);
        run(out);
    }

    void install_cancellation(std::uint64_t seq, Destination::SendHandler& handler) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (!slot.is_connected()) return;
        slot.assign([weak = weak_from_this(), seq, strand = strand](asio::cancellation_type) {
            asio::dispatch(strand, [weak, seq] {
                if (auto self = weak.lock()) {
                    Actions out;
                    self->machine->cancel(seq, Clock::now(), out);
                    self->run(out);
                }
            });
        });
    }

    void run(Actions& out) {
        if (!out.completions.empty()) {
            std::vector<detail::SendCompletion> done;
            done.reserve(out.completions.size());
            for (auto& c : out.completions) complete(c, done);
            if (!done.empty()) detail::post_completions(executor, std::move(done));
        }
        for (const auto id : out.cancel_calls)
            if (auto it = calls.find(id); it != calls.end()) {
                const auto signal = it->second;  // the call may leave `calls` meanwhile
                signal->emit(asio::cancellation_type::terminal);
            }
        for (auto& call : out.calls) start_call(std::move(call));
        for (auto& s : out.stages) start_stage(std::move(s));
        if (out.closed) finish_close(*out.closed);
        publish_facts();
        arm_wake();
    }

    void complete(sqs::SendMachine::Completion& c, std::vector<detail::SendCompletion>& done) {
        auto it = handlers.find(c.seq);
        if (it == handlers.end()) return;
        // The Receipt goes field by field: a Receipt's move is nine strings', mostly empty.
        done.emplace_back(
            stats, dead_letters, config.logger, machine->queue_url(), std::move(it->second), c.ec,
            [&c](Receipt& r) { detail::move_into_empty_receipt(r, std::move(c.receipt)); },
            std::move(c.message), c.accepted_at);
        handlers.erase(it);
        if (handlers.empty()) release_handler_nodes();
    }

    // Idle: the pool's memory goes back, as an idle destination among thousands must not keep
    // its last burst's. The buckets go to the pool first (the map is swapped for an empty one,
    // which holds none), then the pool to the heap.
    void release_handler_nodes() {
        {
            decltype(handlers) emptied(&handler_nodes);
            handlers.swap(emptied);
        }
        handler_nodes.release();
    }

    void publish_facts() {
        if (!queue_url.empty() || machine->queue_url().empty()) return;  // learnt once
        {
            std::lock_guard lock(facts_mutex);
            queue_url = machine->queue_url();
        }
        fifo = machine->fifo();
    }

    // One timer, at the time the machine next needs.
    void arm_wake() {
        const auto next = stopped ? std::nullopt : machine->next_wake();
        const auto at = next.value_or(Clock::time_point::max());
        if (at == wake_at) return;
        wake_at = at;
        if (at == Clock::time_point::max()) {
            wake_timer.cancel();  // nothing to wait for must keep the event loop running
            return;
        }
        wake_timer.expires_at(at);
        wake_timer.async_wait([self = shared_from_this(), at](error_code ec) {
            if (ec || self->wake_at != at) return;  // re-armed, or shutting down
            self->wake_at = Clock::time_point::max();
            Actions out;
            self->machine->wake(Clock::now(), out);
            self->run(out);
        });
    }

    void start_stage(sqs::SendMachine::Stage s) {
        config.stager->async_stage(
            s.body, asio::bind_executor(strand, [self = shared_from_this(), seq = s.seq](
                                                    error_code ec, StagedPayload p) {
                Actions out;
                self->machine->staged(seq, ec, std::move(p), Clock::now(), out);
                self->run(out);
            }));
    }

    // ---- calls: credentials, signing, HTTP ----------------------------------------------------

    using ResponseHandler = std::function<void(error_code, HttpResponse)>;
    // Reused by each request: their strings keep their room.
    Credentials credentials_now;
    std::string target_now;

    void start_call(sqs::SendMachine::Call call) {
        auto cancel = std::make_shared<asio::cancellation_signal>();
        calls.emplace(call.id, cancel);
        ResponseHandler done = [self = shared_from_this(), id = call.id](error_code ec,
                                                                         HttpResponse res) {
            self->calls.erase(id);
            Actions out;
            self->machine->call_answered(id, ec, std::move(res), Clock::now(), out);
            self->run(out);
        };
        // Nearly always: the keys are at hand, and the request goes out now. This runs inside
        // run(), so an answer before the request is out waits for a later job.
        bool at_hand = false;
        try {
            at_hand = config.credentials->credentials_at_hand(credentials_now);
        } catch (...) {
            return answer_provider_threw(std::move(done));
        }
        if (at_hand)
            return send_with(call.action, std::move(call.body), credentials_now, std::move(done),
                             cancel->slot(), call.deadline, /*answer_later=*/true);
        fetch_credentials_then_send(std::move(call), std::move(done), std::move(cancel));
    }

    // An application's provider that throws fails the call as one that answered an error
    // would: the exception must not leave run() with the call counted as out and its
    // messages never answered. Called inside the catch, so it can name what was thrown.
    void answer_provider_threw(ResponseHandler done) {
        HttpResponse res;
        res.failure = "the credentials provider threw: " + detail::thrown_text();
        asio::post(strand,
                   asio::append(std::move(done), make_error_code(Errc::credentials_not_found),
                                std::move(res)));
    }

    // A call waiting for credentials, which can take seconds (instance metadata, STS): the
    // deadline answers it if they come too late.
    struct PendingCall {
        explicit PendingCall(Strand& s) : timer(s) {}
        ResponseHandler done;
        asio::steady_timer timer;
        bool answered = false;
    };

    void fetch_credentials_then_send(sqs::SendMachine::Call call, ResponseHandler done,
                                     std::shared_ptr<asio::cancellation_signal> cancel) {
        auto pending = std::make_shared<PendingCall>(strand);
        pending->done = std::move(done);
        // Until the request goes out, a cancellation answers the call here: a credentials
        // provider takes none, and may take seconds (instance metadata, STS).
        // Weak, as this handler lives in `calls`: no cycle back to this Impl.
        cancel->slot().assign([weak_self = weak_from_this(),
                               weak_pending = std::weak_ptr(pending)](asio::cancellation_type) {
            auto self = weak_self.lock();
            if (!self) return;
            asio::post(self->strand, [weak_pending] {
                auto waiting = weak_pending.lock();
                if (!waiting || waiting->answered) return;
                waiting->answered = true;
                waiting->timer.cancel();
                HttpResponse res;
                res.failure = "cancelled while credentials were fetched";
                auto answer = std::move(waiting->done);
                answer(asio::error::operation_aborted, std::move(res));
            });
        });
        const auto deadline = call.deadline;
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
        try {
            ask_for_credentials(std::move(call), pending, std::move(cancel));
        } catch (...) {
            if (pending->answered) return;
            pending->answered = true;
            pending->timer.cancel();
            answer_provider_threw(std::move(pending->done));
        }
    }

    void ask_for_credentials(sqs::SendMachine::Call call, std::shared_ptr<PendingCall> pending,
                             std::shared_ptr<asio::cancellation_signal> cancel) {
        const auto deadline = call.deadline;
        config.credentials->async_get_credentials(asio::bind_executor(
            strand, [self = shared_from_this(), action = call.action, body = std::move(call.body),
                     pending, cancel, deadline](error_code ec, Credentials creds) mutable {
                if (pending->answered) return;  // the deadline came first
                pending->answered = true;
                pending->timer.cancel();
                auto answer = std::move(pending->done);
                if (ec) {
                    HttpResponse res;
                    res.failure = self->credentials_failure(ec);
                    return answer(ec, std::move(res));
                }
                self->send_with(action, std::move(body), creds, std::move(answer), cancel->slot(),
                                deadline, /*answer_later=*/false);
            }));
    }

    // Signs and sends, unless the destination was abandoned or the deadline passed meanwhile.
    // An answer before the request goes out is posted when `answer_later`.
    void send_with(const char* action, std::string body, const Credentials& creds,
                   ResponseHandler done, asio::cancellation_slot slot, Clock::time_point deadline,
                   bool answer_later) {
        auto answer_now = [&](error_code ec, std::string failure) {
            HttpResponse res;
            res.failure = std::move(failure);
            if (!answer_later) return done(ec, std::move(res));
            asio::post(strand, asio::append(std::move(done), ec, std::move(res)));
        };
        // Abandoned (close deadline, destruction) while the credentials were fetched, or, for
        // keys at hand, before this call started: then nothing is sent.
        if (machine->abandoned() || stopped) return answer_now(asio::error::operation_aborted, {});
        const auto timeout = request_timeout(deadline);
        if (timeout.count() <= 0)
            return answer_now(Errc::timeout,
                              "the message deadline passed before the request was sent");
        if (auto ec = send_signed(action, std::move(body), creds, done, slot, timeout))
            return answer_now(ec, {});
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

    std::string credentials_failure(error_code ec) const {
        if (ec == Errc::credentials_not_found)
            return "no AWS credentials found; tried " + config.credentials->name();
        return "cannot get AWS credentials (" + config.credentials->name() + "): " + ec.message();
    }

    // Signs and sends; `done` is taken only when the request goes out. A signing error is
    // returned, with `done` left for the caller to answer.
    error_code send_signed(const char* action, std::string body, const Credentials& creds,
                           ResponseHandler& done, asio::cancellation_slot slot,
                           std::chrono::milliseconds timeout) {
        static constexpr std::string_view content_type = "application/x-amz-json-1.0";
        target_now.assign("AmazonSQS.").append(action);
        const sigv4::Header signed_headers[] = {{"content-type", content_type},
                                                {"x-amz-target", target_now}};
        const auto hash = sigv4::payload_hash(body);
        sigv4::Request to_sign;
        to_sign.method = "POST";
        to_sign.host = host_header;
        to_sign.path = "/";
        to_sign.headers = signed_headers;
        to_sign.payload_hash = hash.view();
        sigv4::HeaderSignature sig;
        if (auto ec = signer->sign_headers(to_sign, creds, machine->signing_time(), sig)) return ec;
        HttpRequest req;
        req.method = "POST";
        req.origin = origin;
        req.target = "/";
        req.timeout = timeout;
        req.headers.reserve(5);
        req.headers.emplace_back("Content-Type", content_type);
        req.headers.emplace_back("X-Amz-Target", target_now);
        req.headers.emplace_back("X-Amz-Date", std::move(sig.amz_date));
        req.headers.emplace_back("Authorization", std::move(sig.authorization));
        ResponseHandler answer = std::move(done);
        if (creds.has_session_token()) {
            req.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
            machine->set_session_token(creds.session_token);
            // A service error may echo it (SignatureDoesNotMatch quotes the canonical request):
            // it never reaches a receipt, a report or a log.
            answer = [answer = std::move(answer), token = creds.session_token](error_code ec,
                                                                               HttpResponse res) {
                if (res.status != 200) detail::redact(res.body, token);
                detail::redact(res.failure, token);
                answer(ec, std::move(res));
            };
        }
        req.body = std::move(body);
        http.async_request(
            std::move(req),
            asio::bind_cancellation_slot(slot, asio::bind_executor(strand, std::move(answer))));
        return {};
    }

    // ---- close ---------------------------------------------------------------------------------

    void close(std::chrono::milliseconds deadline, CloseHandler handler) {
        drain_quietly();
        if (!close_latch.begin(std::move(handler), executor)) return;
        close_timer.expires_after(deadline);
        close_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec) return;
            Actions out;
            self->machine->abandon("the close deadline passed", out);
            self->run(out);
        });
        Actions out;
        machine->close(Clock::now(), out);
        run(out);
    }

    void finish_close(error_code ec) {
        close_timer.cancel();
        stop_io();
        close_latch.end(ec, executor);
    }

    // Nothing of this destination keeps an event loop busy from here on: the timer, a queue
    // lookup, pooled connections, the stager's idle connections.
    void stop_io() {
        if (stopped) return;
        stopped = true;
        wake_timer.cancel();
        wake_at = Clock::time_point::max();
        std::vector<std::shared_ptr<asio::cancellation_signal>> on_the_wire;
        for (auto& [id, cancel] : calls) on_the_wire.push_back(cancel);
        for (auto& cancel : on_the_wire) cancel->emit(asio::cancellation_type::terminal);
        http.close();
        if (config.stager) config.stager->close_idle_connections();
    }

    void shutdown() {
        drain_quietly();
        Actions out;
        machine->abandon("the destination was destroyed", out);
        run(out);
        close_timer.cancel();
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
    require(config.envelope != Envelope::extended_client ||
                (config.stager && config.staging != StagingPolicy::never),
            "Envelope::extended_client points at staged payloads: it needs a stager");

    sqs::QueueAddress address;
    if (!config.queue_url.empty()) {
        std::string why;
        if (sqs::parse_queue_url(config.queue_url, address, why))
            throw std::invalid_argument("SqsDestination: queue URL \"" + config.queue_url +
                                        "\": " + why);
        if (!address.region.empty() && !is_valid_region(address.region))
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
    if (!region.empty()) require_valid_region(region, "SqsDestination: region");
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
        const auto found = from_environment([] { return endpoint_from_environment("SQS"); });
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
            region = region_from_environment().value;
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("SqsDestination: ") + e.what());
        }
    }
    if (region.empty() && !config.fallback_region.empty()) {
        require_valid_region(config.fallback_region, "SqsDestination: fallback_region");
        region = config.fallback_region;
    }
    require(!region.empty(),
            "no region: the queue URL's host does not name one, and neither SqsDestinationConfig::"
            "region, AWS_REGION, AWS_DEFAULT_REGION nor the profile's region is set");
    if (config.queue_url.empty() && endpoint.empty()) {
        origin.tls = true;
        origin.host = "sqs." + region + ".amazonaws.com";
        origin.port = 443;
    }

    if (const auto ignored = detail::md5_lanes_ignored_setting(); !ignored.empty())
        config.logger.log(LogLevel::warning, "OUTBOX_MD5_LANES=\"" + std::string(ignored) +
                                                 "\" is neither avx2 nor openssl: ignored");

    auto impl = std::make_shared<Impl>(executor, std::move(config));
    impl->origin = origin;
    impl->host_header = origin.host_header();
    impl->signer.emplace(sigv4::SignerConfig{.region = region, .service = "sqs"});
    impl->queue_url = address.url;
    impl->fifo = address.fifo;
    impl->machine.emplace(impl->config, address.url, address.fifo, impl->stats,
                          std::random_device{}());
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

void SqsDestination::do_send(Message&& message, SendHandler handler) {
    const auto& config = impl_->config;
    // Trace context: traceparent and tracestate become attributes (counted, checked and
    // hashed as any other); aws_trace_header goes as the AWSTraceHeader system attribute.
    std::string why;
    if (detail::has_trace_context(message)) {
        why = detail::trace_context_error(message);
        if (why.empty()) (void)detail::move_trace_context_into_attributes(message, why);
    }
    if (why.empty() && config.envelope == Envelope::extended_client)
        why = detail::extended_client_reserved_error(message, "attribute");
    error_code ec = why.empty() ? error_code() : error_code(Errc::invalid_message);
    const bool may_stage = config.stager && config.staging != StagingPolicy::never;
    const bool stage_all = may_stage && config.staging == StagingPolicy::always;
    if (!ec && config.envelope == Envelope::cloudevents && !stage_all)
        message.body = cloudevents_structured(config.cloudevents, message.body);
    // The same event sent again (a relay restarted) carries the same key: SQS drops the copy.
    if (impl_->fifo && message.deduplication_id.empty() && !message.idempotency_key.empty())
        message.deduplication_id = message.idempotency_key.substr(0, 128);
    const std::size_t size = sqs::message_size(message);
    // A body bound for S3 may hold any bytes; everything else must suit SQS.
    if (!ec) ec = sqs::validate_message(message, impl_->fifo, why, /*check_body=*/!stage_all);
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
    impl_->enqueue(std::move(message), size, std::move(handler));
}

void SqsDestination::do_close(std::chrono::milliseconds deadline, CloseHandler handler) {
    asio::post(impl_->strand, [impl = impl_, deadline, h = std::move(handler)]() mutable {
        impl->close(deadline, std::move(h));
    });
}

}  // namespace outbox
