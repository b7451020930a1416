// Delivery to a Kafka topic through librdkafka: SASL PLAIN over TLS by default, no partition
// key, partitions balanced by least bytes, idempotent acks=all production, a bounded queue,
// and a bounded close. Links outbox::kafka. See docs/kafka.md.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/destination.hpp>
#include <outbox/envelope.hpp>
#include <outbox/logging.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/retry_policy.hpp>
#include <outbox/staging_policy.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox {

enum class KafkaSecurity {
    sasl_ssl,        // SASL over TLS (the default)
    sasl_plaintext,  // SASL without TLS: credentials cross the network readable
    ssl,             // TLS, optionally with a client certificate (mutual TLS)
    plaintext,       // neither: local brokers only
};

/// aws_msk_iam: Amazon MSK's IAM access control — SASL OAUTHBEARER with a token made from
/// `credentials` by outbox's SigV4 signer (make_msk_iam_token), refreshed as librdkafka asks.
enum class SaslMechanism { plain, scram_sha_256, scram_sha_512, aws_msk_iam };

enum class KafkaPartitioner {
    /// The partition given the fewest bytes so far (like kafka-go's LeastBytes); messages
    /// carry no key.
    least_bytes,
    /// Partitions in turn; messages carry no key.
    round_robin,
    /// Message::group_id becomes the key, hashed with murmur2 as the Java client does, so a
    /// group keeps its order in one partition. Messages without a group id go to a random one.
    key_hash,
};

struct KafkaTlsConfig {
    std::string ca_file{};           // PEM; empty: the system's trust store
    std::string certificate_file{};  // mutual TLS: the client's certificate (PEM)
    std::string key_file{};          // and its private key (PEM)
    std::string key_password{};
    /// Verify the broker's certificate and host name. Turn off only for a broker you reach
    /// through a tunnel you trust.
    bool verify = true;
};

struct KafkaDestinationConfig {
    /// "broker1:9092,broker2:9092"
    std::string bootstrap_servers{};
    std::string topic{};

    KafkaSecurity security = KafkaSecurity::sasl_ssl;
    SaslMechanism sasl_mechanism = SaslMechanism::plain;
    std::string sasl_username{};
    std::string sasl_password{};  // never logged
    /// aws_msk_iam: where the tokens' credentials come from (any provider: the default chain,
    /// a customer's role with make_assume_role_credentials), and the cluster's region (empty:
    /// AWS_REGION, else AWS_DEFAULT_REGION). No sasl_username then.
    CredentialsProviderPtr credentials{};
    std::string aws_region{};
    KafkaTlsConfig tls{};

    /// "all" (every in-sync replica), "1" (the leader) or "0" (no acknowledgement).
    std::string acks = "all";
    /// No duplicates from the producer's own retries, order kept per partition. Needs acks=all.
    bool idempotence = true;
    /// "none", "gzip", "snappy", "lz4" or "zstd".
    std::string compression = "none";
    /// How long librdkafka waits to fill a batch.
    std::chrono::milliseconds linger{5};

    /// The largest message the producer sends (librdkafka's message.max.bytes). Larger
    /// bodies are staged when a stager is set, else fail with Errc::payload_too_large.
    std::size_t max_message_size = 1000000;
    /// Backpressure: messages (and their bytes) handed to librdkafka and not yet reported.
    /// Beyond either, async_send waits for room.
    std::size_t max_in_flight_messages = 100000;
    std::size_t max_in_flight_bytes = 64 * 1024 * 1024;

    KafkaPartitioner partitioner = KafkaPartitioner::least_bytes;

    /// When both are positive, the topic is created with the Admin API before the first
    /// message if it does not exist (one that exists already counts as success). Otherwise
    /// the broker's auto-creation is relied on.
    int partitions = 0;
    int replication_factor = 0;

    /// Other librdkafka properties, set verbatim after outbox's own (so they win). Values of
    /// secret properties (is_secret_kafka_property) are never logged or put in an error.
    std::vector<std::pair<std::string, std::string>> properties{};

    /// Large payloads, as for SQS: the topic receives
    /// {"status":"success","type":"s3_payload","url":"…","expires_in":N}.
    PayloadStagerPtr stager{};
    StagingPolicy staging = StagingPolicy::over_threshold;
    /// Bodies larger than this many bytes are staged (over_threshold). Zero: max_message_size.
    std::size_t staging_threshold = 0;

    /// Envelope::cloudevents: a structured JSON event; Envelope::cloudevents_binary: the body
    /// as is, with the attributes in ce_* headers (CloudEvents Kafka binding).
    Envelope envelope = Envelope::raw;
    CloudEventAttributes cloudevents{};

    /// librdkafka retries inside: message_deadline bounds a message's time from acceptance to
    /// its report (message.timeout.ms), base_delay and max_delay pace the retries, and
    /// max_attempts bounds the attempts of one message.
    RetryPolicy retry{};
    Logger logger{};
};

class KafkaDestination final : public Destination {
  public:
    /// Throws std::invalid_argument for a configuration that cannot work (no servers or
    /// topic, SASL without a user name, a property librdkafka refuses, limits out of range).
    KafkaDestination(boost::asio::any_io_executor executor, KafkaDestinationConfig config);
    /// Fails whatever is still queued or in flight with operation_aborted and returns once
    /// librdkafka's threads have stopped.
    ~KafkaDestination() override;
    KafkaDestination(const KafkaDestination&) = delete;
    KafkaDestination& operator=(const KafkaDestination&) = delete;

    executor_type get_executor() const noexcept override;
    const std::string& topic() const noexcept;
    DestinationStats stats() const override;
    void set_dead_letter_handler(DeadLetterHandler handler) override;

    /// Rotates the SASL PLAIN or SCRAM user name and password in place: connections made from
    /// now on use them (librdkafka reconnects after a refused authentication; connections
    /// already authenticated stay). For 10 s after a rotation a refused authentication fails
    /// no message (it may be a handshake begun with the old credentials): messages wait for
    /// the next connection. New credentials that are wrong too fail them 10 to 30 s after
    /// the rotation (librdkafka reports an error identical to the last at most every 30 s).
    /// Thread-safe. Throws std::invalid_argument for a destination without those mechanisms,
    /// or an empty user name.
    void set_sasl_credentials(std::string username, std::string password);

  protected:
    void do_send(Message&& message, SendHandler handler) override;
    void do_close(std::chrono::milliseconds deadline, CloseHandler handler) override;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

/// Whether a librdkafka property's value is a secret: its name holds "password" or "secret"
/// (sasl.password, ssl.key.password, sasl.oauthbearer.client.secret, ...), or it is the private
/// key itself (ssl.key.pem, ssl_key) or the OAUTHBEARER configuration.
bool is_secret_kafka_property(std::string_view name);

}  // namespace outbox
