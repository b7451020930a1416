// Delivery to an Amazon SQS queue over the SQS JSON protocol: batched SendMessageBatch
// requests, FIFO groups and deduplication, message attributes, MD5 checks, retries with
// backoff, bounded memory, and a bounded close. See docs/sqs.md.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/destination.hpp>
#include <outbox/envelope.hpp>
#include <outbox/http_client.hpp>
#include <outbox/logging.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/retry_policy.hpp>
#include <outbox/staging_policy.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace outbox {

struct SqsDestinationConfig {
    /// "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo", or a local emulator's
    /// "http://127.0.0.1:4566/000000000000/orders". Give either this or queue_name.
    std::string queue_url{};
    /// A queue name, looked up with GetQueueUrl on first use; needs region (or endpoint).
    std::string queue_name{};
    /// Empty: the queue URL's host (sqs.REGION.amazonaws.com), the endpoint's host, else
    /// AWS_REGION, AWS_DEFAULT_REGION, then `region` in the profile's section of
    /// ~/.aws/config (see docs/configuration.md), then fallback_region. A region is 1 to 64
    /// of a-z, 0-9 and '-'.
    std::string region{};
    /// The region to sign for when nothing else names one (a local emulator's URL and no
    /// AWS_REGION, say). Empty: such a configuration is refused.
    std::string fallback_region{};
    /// Where requests go instead of the queue URL's origin (emulators, VPC endpoints). Empty:
    /// AWS_ENDPOINT_URL_SQS, else AWS_ENDPOINT_URL, else the profile's endpoint_url (none with
    /// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else the queue URL's origin.
    std::string endpoint{};
    /// Required: where signing keys come from (make_default_credentials,
    /// make_static_credentials...).
    CredentialsProviderPtr credentials{};

    /// The queue's maximum message size in bytes. Zero: read MaximumMessageSize with
    /// GetQueueAttributes on first use, and assume 262144 (256 KiB) when that is not allowed.
    std::size_t max_message_size = 0;

    /// Entries per SendMessageBatch (1 to 10); also bounded by max_message_size in bytes.
    std::size_t max_batch_entries = 10;
    /// How long a partly filled batch waits for more messages. Zero sends at once.
    std::chrono::microseconds linger{std::chrono::milliseconds(2)};
    /// Requests on the wire at once.
    std::size_t max_concurrent_requests = 16;
    /// Backpressure: accepted but not yet completed messages and their bytes. Beyond
    /// either, async_send waits for room.
    std::size_t max_in_flight_messages = 4096;
    std::size_t max_in_flight_bytes = 64 * 1024 * 1024;

    /// Large payloads: with a stager, bodies the policy picks are uploaded to S3 and the
    /// queue receives {"status":"success","type":"s3_payload","url":"…","expires_in":N}.
    PayloadStagerPtr stager{};
    StagingPolicy staging = StagingPolicy::over_threshold;
    /// Bodies larger than this many bytes are staged (over_threshold). Zero: the queue's
    /// maximum message size (body and attributes must fit it).
    std::size_t staging_threshold = 0;

    /// Envelope::cloudevents wraps each body (inline, or the staged-payload message) in a
    /// CloudEvents 1.0 structured JSON event with these attributes (id and time per message).
    Envelope envelope = Envelope::raw;
    CloudEventAttributes cloudevents{};

    /// A reply must carry MD5OfMessageBody (and MD5OfMessageAttributes when the message has
    /// attributes) equal to what was sent. A reply without them is no proof of delivery: the
    /// message is retried, and fails with Errc::outcome_unknown when attempts run out. Turn
    /// this off only for an emulator that omits them (digests that are present are still
    /// checked).
    bool require_md5 = true;

    /// Attempts, backoff, and the message deadline: from acceptance to outcome, the queue
    /// lookup and every request included (requests are cut short to meet it).
    RetryPolicy retry{};
    HttpClientConfig http{};
    Logger logger{};
};

class SqsDestination final : public Destination {
  public:
    /// Throws std::invalid_argument for a configuration that cannot work: a queue URL that
    /// does not parse, neither URL nor name, no region to sign for, no credentials provider,
    /// limits out of range.
    SqsDestination(boost::asio::any_io_executor executor, SqsDestinationConfig config);
    /// Fails whatever is still queued with operation_aborted and returns at once; requests
    /// on the wire finish (or time out) in the background without touching this object.
    ~SqsDestination() override;

    SqsDestination(const SqsDestination&) = delete;
    SqsDestination& operator=(const SqsDestination&) = delete;

    executor_type get_executor() const noexcept override;

    /// The queue URL requests address (after GetQueueUrl, when a name was given).
    std::string queue_url() const;
    bool is_fifo() const noexcept;
    DestinationStats stats() const override;
    void set_dead_letter_handler(DeadLetterHandler handler) override;

  protected:
    void do_send(Message&& message, SendHandler handler) override;
    void do_close(std::chrono::milliseconds deadline, CloseHandler handler) override;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

/// The largest maximum message size an SQS queue can have (1 MiB).
inline constexpr std::size_t sqs_largest_max_message_size = 1024 * 1024;

/// What a queue URL says.
struct SqsQueueUrlParts {
    std::string name{};    // the last path segment
    std::string region{};  // from an AWS host name (sqs.REGION.amazonaws.com...), else empty
    bool fifo = false;     // the name ends in ".fifo"
};

/// What is wrong with `url` as SqsDestinationConfig::queue_url; empty when it is an SQS queue
/// URL ("scheme://host[:port]/ACCOUNT/NAME"), and then `parts`, when given, are filled.
std::string check_sqs_queue_url(std::string_view url, SqsQueueUrlParts* parts = nullptr);

/// What SQS would refuse in `message` (its body, attributes, group and deduplication ids for
/// a FIFO queue or their absence for a standard one), checked as SqsDestination checks a
/// message it accepts; empty when there is nothing. `check_body` false skips the body (one
/// that a stager will replace). The size against a queue's limit is not checked: see
/// sqs_message_size.
std::string check_sqs_message(const Message& message, bool fifo_queue, bool check_body = true);

/// The bytes SQS counts against a queue's maximum message size: the body plus each
/// attribute's name, type and value.
std::size_t sqs_message_size(const Message& message) noexcept;

}  // namespace outbox
