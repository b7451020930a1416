// Staging large payloads in S3: PutObject of the body, then a pre-signed GET URL that the
// queue or topic carries instead of the payload. See docs/staging.md.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/diagnostics.hpp>
#include <outbox/error.hpp>
#include <outbox/http_client.hpp>
#include <outbox/logging.hpp>
#include <outbox/retry_policy.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace outbox {

enum class S3Addressing {
    virtual_hosted,  // https://BUCKET.s3.REGION.amazonaws.com/KEY (AWS's default)
    path_style,      // ENDPOINT/BUCKET/KEY (local S3 servers, dotted bucket names)
};

enum class ServerSideEncryption {
    none,     // the bucket's default applies
    sse_s3,   // x-amz-server-side-encryption: AES256
    sse_kms,  // x-amz-server-side-encryption: aws:kms, with kms_key_id when given
};

/// The checksum sent with each PutObject, which S3 verifies against the body it received
/// (a body damaged on the way is refused, not stored).
enum class S3Checksum {
    /// As the AWS SDKs do: CRC32, unless AWS_REQUEST_CHECKSUM_CALCULATION (or
    /// request_checksum_calculation in the shared config file) is when_required, which sends
    /// none. Resolved at construction; config() then says which.
    automatic,
    crc32,      // x-amz-checksum-crc32
    crc64nvme,  // x-amz-checksum-crc64nvme
    none,       // for S3-compatible stores that refuse checksum headers
};

class PayloadLinks;  // <outbox/payload_links.hpp>

struct PayloadStagerConfig {
    std::string bucket{};  // required: the operator's bucket or the customer's
    /// Object keys: "{prefix}/{yyyy}/{mm}/{dd}/{uuid}" by default. Placeholders: {prefix},
    /// {yyyy}, {mm}, {dd}, {hh}, {uuid}. A key never starts with '/'.
    std::string key_template = "{prefix}/{yyyy}/{mm}/{dd}/{uuid}";
    std::string prefix = "outbox";
    /// Empty: AWS_REGION, AWS_DEFAULT_REGION, then the profile's region (docs/configuration.md).
    /// Required for AWS; local servers accept any.
    std::string region{};
    /// e.g. "http://127.0.0.1:4568": path-style on that server. Empty: AWS_ENDPOINT_URL_S3,
    /// AWS_ENDPOINT_URL, the profile's endpoint_url, else AWS's own.
    std::string endpoint{};
    S3Addressing addressing = S3Addressing::virtual_hosted;  // ignored with an endpoint
    CredentialsProviderPtr credentials{};                    // required

    std::string content_type = "application/json";
    std::string content_encoding{};  // e.g. "gzip" when the caller compressed the body
    ServerSideEncryption encryption = ServerSideEncryption::none;
    std::string kms_key_id{};
    /// Object tags ("key", "value"), so a lifecycle rule can expire staged objects.
    std::vector<std::pair<std::string, std::string>> tags{};

    S3Checksum checksum = S3Checksum::automatic;
    /// PutObject with If-None-Match: * (S3's conditional write): a PUT retried after its reply
    /// was lost cannot overwrite what its first attempt stored; the 412 it gets means that
    /// attempt landed, and the stage succeeds. Turn off for stores that refuse the header.
    bool conditional_write = true;

    /// Lifetime of the pre-signed GET URL: 1 s to 7 days. Never longer than the signing
    /// credentials live; StagedPayload::expires_in tells the real lifetime.
    std::chrono::seconds url_expires{600};
    /// Long-lived links beside the URL, for consumers that fall behind it: with `links` set,
    /// each staged payload also gets a link valid for `link_lifetime`, which a
    /// PayloadLinkService answers with a fresh URL, and the staged-payload message carries it
    /// as a fifth field, "link" (docs/staging.md). Unset: the message is the documented four.
    std::shared_ptr<const PayloadLinks> links{};
    std::chrono::seconds link_lifetime{std::chrono::hours(24 * 30)};

    RetryPolicy retry{};
    HttpClientConfig http{};
    Logger logger{};
};

struct StagedPayload {
    std::string bucket{};
    std::string key{};
    std::string url{};  // pre-signed GET
    std::chrono::seconds expires_in{0};
    std::string etag{};
    std::uint32_t attempts = 0;  // PutObject requests made
    Diagnostics diagnostics{};   // on failure: S3's Code, Message, RequestId, HTTP status
    /// A retried PUT was refused with 412 because an earlier attempt had stored the object
    /// (its reply was lost): the object is ours; `etag` is then empty.
    bool stored_by_earlier_attempt = false;
    std::string link{};  // with PayloadStagerConfig::links: the long-lived link
};

class PayloadStager {
  public:
    /// Throws std::invalid_argument for a configuration that cannot work (no bucket, an
    /// invalid bucket name, no credentials, an expiry outside 1 s to 7 days, a bad endpoint).
    PayloadStager(boost::asio::any_io_executor executor, PayloadStagerConfig config);
    ~PayloadStager();
    PayloadStager(const PayloadStager&) = delete;
    PayloadStager& operator=(const PayloadStager&) = delete;

    const PayloadStagerConfig& config() const noexcept;

    /// Uploads `body` under a new key and pre-signs a GET URL for it. Completion:
    /// void(error_code, StagedPayload), on the handler's executor, never inside this call.
    /// Retries as destinations do (throttling, 5xx, transport, 409 ConditionalRequestConflict;
    /// with conditional_write a retry never overwrites). Errors: Errc::service_error (S3
    /// refused: see diagnostics; BadDigest when the checksum did not match),
    /// Errc::throttled, Errc::service_unavailable, transport errors, credential errors.
    /// Cancellation: terminal; before the upload completes the operation ends with
    /// operation_aborted (an object may have been written).
    template <class CompletionToken>
    auto async_stage(std::string body, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, StagedPayload)>(
            [this](auto handler, std::string b) {
                start(std::move(b), Handler(std::move(handler)));
            },
            token, std::move(body));
    }

    /// Closes idle connections and fails later stages with operation_aborted; stages in
    /// flight finish.
    void close();

    /// Closes idle connections only; later stages open new ones. Destinations call it when
    /// they close, so a stager they share keeps no event loop busy.
    void close_idle_connections();

  private:
    struct Impl;
    using Handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, StagedPayload)>;
    void start(std::string body, Handler handler);
    std::shared_ptr<Impl> impl_;
};

using PayloadStagerPtr = std::shared_ptr<PayloadStager>;

/// One object's pre-signed URL, as PayloadStager makes for what it stages.
struct S3PresignRequest {
    std::string bucket{};
    std::string key{};       // as stored: encoded here
    std::string region{};    // required: a region name
    std::string endpoint{};  // empty: AWS's own; else path-style on this http(s) server
    S3Addressing addressing = S3Addressing::virtual_hosted;  // ignored with an endpoint
    std::string method = "GET";
    std::chrono::seconds expires{600};  // 1 s to 7 days
};

/// Signs a URL for `request` with `credentials` at `now` (SigV4 query signing, no I/O).
/// Errors: Errc::invalid_argument for the bucket name, an empty key or the region (`why`, when
/// given, says which), Errc::invalid_url for the endpoint, Errc::invalid_expiry,
/// Errc::missing_credentials.
boost::system::error_code presign_s3_url(const S3PresignRequest& request,
                                         const Credentials& credentials,
                                         std::chrono::system_clock::time_point now,
                                         std::string& url, std::string* why = nullptr);

}  // namespace outbox
