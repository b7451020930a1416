// PayloadStager: PutObject signed with the body's SHA-256, retried as the destinations
// retry, then a pre-signed GET that never outlives the credentials that signed it. The body
// is hashed on the caller's thread; every other step of every stage runs on one strand.
#include <outbox/aws_environment.hpp>
#include "aws/clock_skew.hpp"
#include "core/backoff.hpp"
#include "core/crc.hpp"
#include "core/redact.hpp"
#include "core/strand_executor.hpp"
#include "core/thrown_text.hpp"

#include <outbox/payload_links.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sigv4.hpp>
#include "aws/s3/s3_protocol.hpp"
#include "aws/sigv4/sigv4_canonical.hpp"
#include "http/http_date.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <random>
#include <stdexcept>

namespace outbox {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

struct PayloadStager::Impl : std::enable_shared_from_this<PayloadStager::Impl> {
    Impl(asio::any_io_executor ex, PayloadStagerConfig cfg)
        : executor(ex),
          strand(detail::make_strand_executor(ex)),
          config(std::move(cfg)),
          http(ex, config.http),
          signer(sigv4::SignerConfig{.region = config.region.empty() ? "us-east-1" : config.region,
                                     .service = "s3",
                                     .path_rule = sigv4::PathRule::s3,
                                     .send_content_sha256 = true}) {}

    asio::any_io_executor executor;
    asio::any_io_executor strand;  // detail::make_strand_executor says why not asio::strand<...>
    PayloadStagerConfig config;
    HttpClient http;
    sigv4::Signer signer;
    HttpOrigin origin;
    std::string host_header;
    std::string path_prefix;  // "/" or "/BUCKET/" (path-style), before the encoded key
    std::string tagging;

    // On the strand.
    boost::uuids::random_generator uuids;
    std::minstd_rand rng{std::random_device{}()};
    detail::ClockSkew clock;

    struct Op {
        std::string body;
        Handler handler;
        StagedPayload result;
        std::string path;  // encoded
        std::string payload_hash;
        std::string checksum;  // the x-amz-checksum-* value (base64), when one is sent
        // An attempt whose outcome is unknown (no reply, or a 5xx) may have stored the object:
        // only then is a later 412 ours.
        bool maybe_stored = false;
        asio::steady_timer timer;
        Clock::time_point started;
        asio::cancellation_signal cancel_http;
        bool cancelled = false;

        Op(asio::any_io_executor ex, std::string b, Handler h)
            : body(std::move(b)), handler(std::move(h)), timer(ex), started(Clock::now()) {}
    };
    void start(std::string body, Handler handler) {
        auto op = std::make_shared<Op>(strand, std::move(body), std::move(handler));
        // Off the strand, as the hashes of a large body take a while.
        op->payload_hash = std::string(sigv4::payload_hash(op->body).view());
        if (config.checksum == S3Checksum::crc32)
            op->checksum = detail::checksum_header_value(detail::crc32(op->body));
        else if (config.checksum == S3Checksum::crc64nvme)
            op->checksum = detail::checksum_header_value(detail::crc64nvme(op->body));
        auto slot = asio::get_associated_cancellation_slot(op->handler);
        if (slot.is_connected()) {
            slot.assign([weak = std::weak_ptr<Op>(op), strand = strand](asio::cancellation_type) {
                asio::dispatch(strand, [weak] {
                    auto o = weak.lock();
                    if (!o || o->cancelled) return;
                    o->cancelled = true;
                    o->timer.cancel();
                    o->cancel_http.emit(asio::cancellation_type::terminal);
                });
            });
        }
        asio::dispatch(strand, [self = shared_from_this(), op]() mutable {
            op->result.bucket = self->config.bucket;
            op->result.key = detail::s3::expand_key_template(
                self->config.key_template, self->config.prefix, std::chrono::system_clock::now(),
                boost::uuids::to_string(self->uuids()));
            op->path = self->path_prefix;
            detail::sigv4::append_uri_encoded(op->path, op->result.key, true);
            self->attempt(std::move(op));
        });
    }

    void attempt(std::shared_ptr<Op> op) {
        ++op->result.attempts;
        try {
            config.credentials->async_get_credentials(asio::bind_executor(
                strand, [self = shared_from_this(), op](error_code ec, Credentials creds) mutable {
                    if (ec) return self->finish(*op, ec);
                    if (op->cancelled) return self->finish(*op, asio::error::operation_aborted);
                    self->put(std::move(op), std::move(creds));
                }));
        } catch (...) {
            // An application's provider that throws: the staging fails as without keys. The
            // exception would otherwise leave the event loop, and the staging unanswered.
            op->result.diagnostics = {};  // an earlier attempt's S3 error is not this failure's
            op->result.diagnostics.message =
                "the credentials provider threw: " + detail::thrown_text();
            finish(*op, Errc::credentials_not_found);
        }
    }

    void put(std::shared_ptr<Op> op, Credentials creds) {
        HttpRequest req;
        req.method = "PUT";
        req.origin = origin;
        req.target = op->path;
        req.headers.reserve(10);
        req.headers.emplace_back("Content-Type", config.content_type);
        if (!config.content_encoding.empty())
            req.headers.emplace_back("Content-Encoding", config.content_encoding);
        if (config.encryption == ServerSideEncryption::sse_s3)
            req.headers.emplace_back("x-amz-server-side-encryption", "AES256");
        if (config.encryption == ServerSideEncryption::sse_kms) {
            req.headers.emplace_back("x-amz-server-side-encryption", "aws:kms");
            if (!config.kms_key_id.empty())
                req.headers.emplace_back("x-amz-server-side-encryption-aws-kms-key-id",
                                         config.kms_key_id);
        }
        if (!tagging.empty()) req.headers.emplace_back("x-amz-tagging", tagging);
        if (!op->checksum.empty())
            req.headers.emplace_back(config.checksum == S3Checksum::crc32
                                         ? "x-amz-checksum-crc32"
                                         : "x-amz-checksum-crc64nvme",
                                     op->checksum);
        if (config.conditional_write) req.headers.emplace_back("If-None-Match", "*");
        std::vector<sigv4::Header> to_sign;
        to_sign.reserve(req.headers.size());
        for (const auto& [name, value] : req.headers) to_sign.push_back({name, value});
        sigv4::Request signing;
        signing.method = "PUT";
        signing.host = host_header;
        signing.path = op->path;
        signing.headers = to_sign;
        signing.payload_hash = op->payload_hash;
        sigv4::HeaderSignature sig;
        if (auto ec = signer.sign_headers(signing, creds, clock.now(), sig)) return finish(*op, ec);
        req.headers.emplace_back("X-Amz-Date", std::move(sig.amz_date));
        req.headers.emplace_back("X-Amz-Content-SHA256", std::move(sig.content_sha256));
        req.headers.emplace_back("Authorization", std::move(sig.authorization));
        if (creds.has_session_token())
            req.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
        req.body = op->body;  // kept for a retry
        http.async_request(
            std::move(req),
            asio::bind_cancellation_slot(
                op->cancel_http.slot(),
                asio::bind_executor(
                    strand, [self = shared_from_this(), op, creds = std::move(creds)](
                                error_code ec, HttpResponse res) mutable {
                        self->on_put(std::move(op), std::move(creds), ec, std::move(res));
                    })));
    }

    void on_put(std::shared_ptr<Op> op, Credentials creds, error_code ec, HttpResponse res) {
        if (op->cancelled) return finish(*op, asio::error::operation_aborted);
        Diagnostics d;
        std::optional<std::chrono::milliseconds> asked;
        if (!ec && res.status == 200) {
            op->result.etag = std::string(res.header("ETag"));
            return presign(*op, creds);
        }
        if (ec || res.status >= 500) op->maybe_stored = true;
        if (ec) {
            d.message = res.failure.empty() ? ec.message() : res.failure;
            detail::redact(d.message, creds.session_token);
        } else {
            detail::redact(res.body, creds.session_token);  // S3 errors may echo the request
            ec = detail::s3::parse_error_response(res, d);
            // Another conditional write to the key was in progress: S3 asks for a retry.
            if (res.status == 409 && d.code == "ConditionalRequestConflict")
                ec = Errc::service_unavailable;
            // The key is new (a UUID): S3's 412 after an attempt that may have stored it
            // means that attempt did, and only its reply was lost. Otherwise the object is
            // someone else's, and an error.
            if (res.status == 412 && config.conditional_write) {
                if (op->maybe_stored && d.code == "PreconditionFailed") {
                    config.logger.log(LogLevel::debug,
                                      "s3: " + op->result.key +
                                          " was stored by an earlier attempt whose reply was "
                                          "lost (412 on attempt " +
                                          std::to_string(op->result.attempts) + ")");
                    op->result.stored_by_earlier_attempt = true;
                    return presign(*op, creds);
                }
                d.message = "an object with key \"" + op->result.key +
                            "\" exists already (If-None-Match: *); does key_template make "
                            "keys that repeat?";
            }
            detail::redact(d.message, creds.session_token);  // escaped in the XML, plain here
            detail::redact(d.service_message, creds.session_token);
            asked = detail::parse_retry_after(res.header("Retry-After"),
                                              std::chrono::system_clock::now());
            if ((d.code == "RequestTimeTooSkewed" || d.code == "RequestExpired") &&
                clock.correct(res.header("Date"))) {
                ec = Errc::service_unavailable;  // retry at once with the corrected clock
                asked = std::chrono::milliseconds(0);
            }
        }
        op->result.diagnostics = d;
        const auto& p = config.retry;
        if (!is_retryable(ec) || op->result.attempts >= p.max_attempts) return finish(*op, ec);
        const auto delay = detail::backoff_delay(p, op->result.attempts, rng, asked);
        if (p.message_deadline.count() > 0 &&
            Clock::now() + delay > op->started + p.message_deadline)
            return finish(*op, ec);
        config.logger.log(LogLevel::debug, "s3: PutObject of " + op->result.key + " failed (" +
                                               ec.message() + "), trying again in " +
                                               std::to_string(delay.count()) + " ms");
        op->timer.expires_after(delay);
        op->timer.async_wait([self = shared_from_this(), op](error_code wait_ec) mutable {
            if (wait_ec || op->cancelled) return self->finish(*op, asio::error::operation_aborted);
            self->attempt(std::move(op));
        });
    }

    void presign(Op& op, const Credentials& creds) {
        const auto now = clock.now();
        auto expires = config.url_expires;
        if (creds.expiration) {
            // A URL stops working when the credentials that signed it expire.
            const auto left =
                std::chrono::duration_cast<std::chrono::seconds>(*creds.expiration - now);
            if (left < std::chrono::seconds(1)) return finish(op, Errc::credentials_expired);
            expires = std::min(expires, left);
        }
        sigv4::Request request;
        request.method = "GET";
        request.host = host_header;
        request.path = op.path;
        sigv4::PresignedQuery query;
        if (auto ec = signer.presign(request, creds, now, expires, query)) return finish(op, ec);
        op.result.url = std::string(origin.tls ? "https://" : "http://") + host_header + op.path +
                        "?" + query.query;
        op.result.expires_in = expires;
        if (config.links)
            op.result.link =
                config.links->link(op.result.bucket, op.result.key, now + config.link_lifetime);
        op.result.diagnostics = {};
        finish(op, {});
    }

    void finish(Op& op, error_code ec) {
        if (!op.handler) return;  // already finished
        auto slot = asio::get_associated_cancellation_slot(op.handler);
        if (slot.is_connected()) slot.clear();
        auto handler = std::move(op.handler);
        asio::post(executor, asio::append(std::move(handler), ec, std::move(op.result)));
    }
};

PayloadStager::PayloadStager(asio::any_io_executor executor, PayloadStagerConfig config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("PayloadStager: " + what);
    };
    require(!config.bucket.empty(), "no bucket");
    require(detail::s3::is_valid_bucket_name(config.bucket),
            "\"" + config.bucket + "\" is not a valid S3 bucket name (3-63 of a-z 0-9 . -)");
    require(config.credentials != nullptr, "no credentials provider");
    require(config.url_expires >= sigv4::min_presign_expiry &&
                config.url_expires <= sigv4::max_presign_expiry,
            "url_expires must be 1 second to 7 days");
    require(config.encryption == ServerSideEncryption::sse_kms || config.kms_key_id.empty(),
            "kms_key_id needs encryption = sse_kms");
    require(config.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
    require(!config.links || (config.link_lifetime >= std::chrono::seconds(1) &&
                              config.link_lifetime <= std::chrono::hours(24 * 366)),
            "link_lifetime must be 1 second to a year");
    require(config.key_template.find("{uuid}") != std::string::npos,
            "key_template needs {uuid}: staged objects must not overwrite each other");
    if (config.checksum == S3Checksum::automatic) {
        try {
            config.checksum =
                request_checksum_calculation_from_environment().value == "when_required"
                    ? S3Checksum::none
                    : S3Checksum::crc32;
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("PayloadStager: ") + e.what());
        }
    }

    // Empty fields from the environment, as every AWS SDK reads it (docs/configuration.md).
    try {
        if (!config.region.empty()) require_valid_region(config.region, "region");
        if (config.endpoint.empty()) config.endpoint = endpoint_from_environment("S3").value;
        if (config.region.empty()) config.region = region_from_environment().value;
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("PayloadStager: ") + e.what());
    }
    require(!config.endpoint.empty() || !config.region.empty(),
            "no region: set PayloadStagerConfig::region, AWS_REGION or the profile's region (or "
            "give an endpoint)");
    detail::s3::BucketAddress address;
    if (detail::s3::bucket_address(config.bucket, config.region, config.endpoint,
                                   config.addressing == S3Addressing::path_style, address))
        throw std::invalid_argument("PayloadStager: endpoint \"" + config.endpoint +
                                    "\" is not a plain http(s) URL without query or fragment");
    auto impl = std::make_shared<Impl>(executor, std::move(config));
    impl->origin = address.origin;
    impl->host_header = address.origin.host_header();
    impl->path_prefix = std::move(address.path_prefix);
    impl->tagging = detail::s3::tagging_header(impl->config.tags);
    impl_ = std::move(impl);
}

PayloadStager::~PayloadStager() {
    impl_->http.close();
}

const PayloadStagerConfig& PayloadStager::config() const noexcept {
    return impl_->config;
}

void PayloadStager::close() {
    impl_->http.close();
}

void PayloadStager::close_idle_connections() {
    impl_->http.close_idle();
}

void PayloadStager::start(std::string body, Handler handler) {
    impl_->start(std::move(body), std::move(handler));
}

}  // namespace outbox
