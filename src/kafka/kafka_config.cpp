#include "kafka/kafka_config.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace outbox::detail::kafka {

namespace {

const char* security_protocol(KafkaSecurity s) {
    switch (s) {
        case KafkaSecurity::sasl_ssl:
            return "sasl_ssl";
        case KafkaSecurity::sasl_plaintext:
            return "sasl_plaintext";
        case KafkaSecurity::ssl:
            return "ssl";
        case KafkaSecurity::plaintext:
            return "plaintext";
    }
    return "sasl_ssl";
}

const char* sasl_mechanism_name(SaslMechanism m) {
    switch (m) {
        case SaslMechanism::plain:
            return "PLAIN";
        case SaslMechanism::scram_sha_256:
            return "SCRAM-SHA-256";
        case SaslMechanism::scram_sha_512:
            return "SCRAM-SHA-512";
        case SaslMechanism::aws_msk_iam:
            return "OAUTHBEARER";
    }
    return "PLAIN";
}

bool uses_sasl(const KafkaDestinationConfig& c) {
    return c.security == KafkaSecurity::sasl_ssl || c.security == KafkaSecurity::sasl_plaintext;
}

}  // namespace

bool uses_msk_iam(const KafkaDestinationConfig& c) {
    return uses_sasl(c) && c.sasl_mechanism == SaslMechanism::aws_msk_iam;
}

std::string msk_iam_region(const KafkaDestinationConfig& c) {
    if (!c.aws_region.empty()) return c.aws_region;
    for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"})
        if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return v;
    return {};
}

bool is_valid_topic_name(std::string_view t) {
    if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
    return std::all_of(t.begin(), t.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

void check_config(const KafkaDestinationConfig& config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("KafkaDestination: " + what);
    };
    require(!config.bootstrap_servers.empty(), "no bootstrap_servers");
    require(
        is_valid_topic_name(config.topic),
        "topic \"" + config.topic + "\" is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)");
    require(!uses_sasl(config) || uses_msk_iam(config) || !config.sasl_username.empty(),
            "SASL needs sasl_username (or security = plaintext/ssl)");
    require(!uses_msk_iam(config) || config.credentials != nullptr,
            "aws_msk_iam needs credentials");
    require(!uses_msk_iam(config) || !msk_iam_region(config).empty(),
            "aws_msk_iam needs aws_region (or AWS_REGION)");
    require(config.max_message_size >= 1 && config.max_message_size <= 1000000000,
            "max_message_size must be 1 to 1000000000");
    require(config.max_in_flight_messages >= 1 && config.max_in_flight_messages <= 2147483647,
            "max_in_flight_messages must be at least 1");
    require(config.max_in_flight_bytes >= config.max_message_size,
            "max_in_flight_bytes must be at least max_message_size");
    require((config.partitions > 0) == (config.replication_factor > 0),
            "give both partitions and replication_factor, or neither");
    require(config.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
    require(config.envelope != Envelope::extended_client ||
                (config.stager && config.staging != StagingPolicy::never),
            "Envelope::extended_client points at staged payloads: it needs a stager");
}

Properties producer_properties(const KafkaDestinationConfig& c) {
    Properties p;
    auto set = [&](std::string name, std::string value) {
        p.emplace_back(std::move(name), std::move(value));
    };
    set("bootstrap.servers", c.bootstrap_servers);
    set("client.id", "outbox");
    set("security.protocol", security_protocol(c.security));
    if (uses_sasl(c)) {
        set("sasl.mechanisms", sasl_mechanism_name(c.sasl_mechanism));
        if (!uses_msk_iam(c)) {
            set("sasl.username", c.sasl_username);
            set("sasl.password", c.sasl_password);
        }
    }
    if (c.security == KafkaSecurity::sasl_ssl || c.security == KafkaSecurity::ssl) {
        if (!c.tls.ca_file.empty()) set("ssl.ca.location", c.tls.ca_file);
        if (!c.tls.certificate_file.empty())
            set("ssl.certificate.location", c.tls.certificate_file);
        if (!c.tls.key_file.empty()) set("ssl.key.location", c.tls.key_file);
        if (!c.tls.key_password.empty()) set("ssl.key.password", c.tls.key_password);
        set("enable.ssl.certificate.verification", c.tls.verify ? "true" : "false");
        set("ssl.endpoint.identification.algorithm", c.tls.verify ? "https" : "none");
    }
    set("acks", c.acks);
    set("enable.idempotence", c.idempotence ? "true" : "false");
    set("compression.codec", c.compression);
    set("linger.ms", std::to_string(c.linger.count()));
    // Room for the key and headers beside the largest value.
    set("message.max.bytes",
        std::to_string(std::max<std::size_t>(c.max_message_size + 1024, 1000)));
    set("queue.buffering.max.messages", std::to_string(c.max_in_flight_messages));
    set("queue.buffering.max.kbytes",
        std::to_string(std::max<std::size_t>(1, (c.max_in_flight_bytes + 1023) / 1024)));
    set("message.timeout.ms", std::to_string(c.retry.message_deadline.count()));
    set("retry.backoff.ms", std::to_string(c.retry.base_delay.count()));
    set("message.send.max.retries", std::to_string(c.retry.max_attempts - 1));
    if (c.partitioner == KafkaPartitioner::key_hash) {
        set("partitioner", "murmur2_random");
    } else {
        // Stickiness would bypass the partitioner for keyless messages (it picks at random).
        set("sticky.partitioning.linger.ms", "0");
    }
    // librdkafka's callbacks then run only inside rd_kafka_poll, on our executor.
    set("log.queue", "true");
    for (const auto& [name, value] : c.properties) set(name, value);
    if (c.logger.level == LogLevel::debug) set("log_level", "7");
    return p;
}

}  // namespace outbox::detail::kafka
