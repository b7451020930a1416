// How the program reaches destinations: the delivery options `send` and `relay` share
// (--endpoint, --region, --stage..., --sasl-..., --tls-ca, --plaintext, ...), and a factory
// that makes the destination for a target — an SQS queue URL or kafka://HOSTS/TOPIC.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/destination.hpp>
#include <outbox/logging.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/retry_policy.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::cli {

struct DeliveryOptions {
    std::string endpoint, region;  // SQS
    std::string stage, s3_endpoint, s3_region;
    bool stage_always = false;
    std::string stage_checksum;        // crc32, crc64nvme or none; empty: as the SDKs do
    bool stage_unconditional = false;  // PutObject without If-None-Match: *
    std::size_t stage_threshold = 0;
    long long url_expires = 600;
    std::string envelope = "raw";
    std::uint32_t max_attempts = 0;  // 0: the destination's default
    long long deadline_seconds = 0;  // 0: the destination's default
    bool allow_missing_md5 = false;
    std::string sasl_user, sasl_password_file, tls_ca;  // Kafka
    bool plaintext = false;
    std::vector<std::pair<std::string, std::string>> kafka_properties;  // -X NAME=VALUE
};

/// The usage lines of the delivery options, for a command's --help.
extern const std::string_view delivery_usage;

/// Takes argv[i] when it is a delivery option (and its value, advancing i). True when taken;
/// `error` is then set when its value is bad. `command` prefixes messages ("send", "relay").
bool take_delivery_option(std::string_view command, int argc, char** argv, int& i,
                          DeliveryOptions& o, std::string& error);

/// What is inconsistent in `o` for targets of these kinds (empty: nothing).
std::string check_delivery_options(std::string_view command, const DeliveryOptions& o,
                                   bool sqs_targets, bool kafka_targets);

/// Makes destinations for targets with the options. Credentials (the default chain) and the
/// stager are made once and shared by every destination. Throws std::invalid_argument with
/// what is wrong (an unreadable AWS_CA_BUNDLE, a bad --stage).
class Delivery {
  public:
    Delivery(boost::asio::any_io_executor executor, DeliveryOptions options, Logger logger);

    /// The destination for `target`: an SQS queue URL, or kafka://HOST:PORT[,...]/TOPIC.
    /// Throws std::invalid_argument naming what is wrong with it.
    std::unique_ptr<Destination> make(const std::string& target, const RetryPolicy& retry) const;

    /// Closes the stager's connections for good (its idle connections would hold the loop).
    void close();

  private:
    boost::asio::any_io_executor executor_;
    DeliveryOptions options_;
    Logger logger_;
    CredentialsProviderPtr credentials_;
    PayloadStagerPtr stager_;
};

/// True for kafka://..., false for what should be an SQS queue URL.
bool is_kafka_target(std::string_view target);

/// What is wrong with `target` (empty: nothing): an SQS queue URL, or
/// kafka://HOST:PORT[,...]/TOPIC. `fifo`, when given, tells whether it names a FIFO queue.
std::string why_not_a_target(const std::string& target, bool* fifo = nullptr);

/// Why `message` can never be delivered to `target`, checked as its destination would check
/// it before any request (empty: it may be delivered). With a stager (or without
/// `check_size`, when a relay with a stager may deliver it), size is not checked.
std::string why_undeliverable(const std::string& target, const Message& message, bool staging,
                              bool check_size = true);

/// why_undeliverable for many events from one thread: what the last target is (its URL parsed)
/// is kept, so lines to one queue parse its URL once, not each (the parse was a sixth of
/// `outbox enqueue`'s instructions).
class UndeliverableCheck {
  public:
    UndeliverableCheck(bool staging, bool check_size)
        : staging_(staging), check_size_(check_size) {}
    std::string operator()(const std::string& target, const Message& message);

  private:
    bool staging_, check_size_;
    bool known_ = false;
    std::string target_;
    bool kafka_ = false;
    bool fifo_ = false;
    std::string target_error_;  // empty when the target is one
};

}  // namespace outbox::cli
