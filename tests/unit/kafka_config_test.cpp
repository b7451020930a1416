// A KafkaDestinationConfig's checks and the librdkafka properties it becomes, without a
// producer or a broker.
#include "kafka/kafka_config.hpp"
#include "catch.hpp"

#include <outbox/kafka_destination.hpp>

#include <optional>
#include <stdexcept>

namespace kafka = outbox::detail::kafka;
using outbox::KafkaDestinationConfig;

namespace {

// A provider that is never asked: the configuration only needs one to be there.
struct NoCredentials final : outbox::CredentialsProvider {
    std::string name() const override { return "none"; }
    void do_get_credentials(Handler) override {}
};

KafkaDestinationConfig sasl_config() {
    KafkaDestinationConfig c;
    c.bootstrap_servers = "broker-1:9096,broker-2:9096";
    c.topic = "orders";
    c.sasl_username = "outbox";
    c.sasl_password = "s3cret";
    return c;
}

// The value librdkafka ends up with: the last one set.
std::optional<std::string> value_of(const kafka::Properties& p, const std::string& name) {
    std::optional<std::string> found;
    for (const auto& [n, v] : p)
        if (n == name) found = v;
    return found;
}

std::string refusal(const KafkaDestinationConfig& c) {
    try {
        kafka::check_config(c);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

}  // namespace

TEST_CASE("kafka config: SASL PLAIN over verified TLS, idempotent acks=all, by default",
          "[kafka]") {
    const auto p = kafka::producer_properties(sasl_config());
    CHECK(value_of(p, "bootstrap.servers") == "broker-1:9096,broker-2:9096");
    CHECK(value_of(p, "security.protocol") == "sasl_ssl");
    CHECK(value_of(p, "sasl.mechanisms") == "PLAIN");
    CHECK(value_of(p, "sasl.username") == "outbox");
    CHECK(value_of(p, "sasl.password") == "s3cret");
    CHECK(value_of(p, "enable.ssl.certificate.verification") == "true");
    CHECK(value_of(p, "ssl.endpoint.identification.algorithm") == "https");
    CHECK_FALSE(value_of(p, "ssl.ca.location"));  // the system's trust store
    CHECK(value_of(p, "acks") == "all");
    CHECK(value_of(p, "enable.idempotence") == "true");
    CHECK(value_of(p, "linger.ms") == "5");
    CHECK(value_of(p, "message.max.bytes") == "1001024");  // room for key and headers
    CHECK(value_of(p, "queue.buffering.max.messages") == "100000");
    CHECK(value_of(p, "queue.buffering.max.kbytes") == "65536");
    CHECK(value_of(p, "message.timeout.ms") == "300000");
    CHECK(value_of(p, "message.send.max.retries") == "9");
    // Least bytes is ours (a partitioner callback): librdkafka's stickiness must not bypass it.
    CHECK(value_of(p, "sticky.partitioning.linger.ms") == "0");
    CHECK_FALSE(value_of(p, "partitioner"));
    CHECK(value_of(p, "log.queue") == "true");
    CHECK_FALSE(value_of(p, "log_level"));
}

TEST_CASE("kafka config: security, TLS files, partitioners, SCRAM", "[kafka]") {
    auto c = sasl_config();
    c.security = outbox::KafkaSecurity::plaintext;
    auto p = kafka::producer_properties(c);
    CHECK(value_of(p, "security.protocol") == "plaintext");
    CHECK_FALSE(value_of(p, "sasl.username"));
    CHECK_FALSE(value_of(p, "enable.ssl.certificate.verification"));

    c = sasl_config();
    c.security = outbox::KafkaSecurity::ssl;
    c.tls.ca_file = "/etc/ca.pem";
    c.tls.certificate_file = "/etc/client.pem";
    c.tls.key_file = "/etc/client.key";
    c.tls.verify = false;
    p = kafka::producer_properties(c);
    CHECK(value_of(p, "security.protocol") == "ssl");
    CHECK_FALSE(value_of(p, "sasl.mechanisms"));
    CHECK(value_of(p, "ssl.ca.location") == "/etc/ca.pem");
    CHECK(value_of(p, "ssl.certificate.location") == "/etc/client.pem");
    CHECK(value_of(p, "ssl.key.location") == "/etc/client.key");
    CHECK_FALSE(value_of(p, "ssl.key.password"));
    CHECK(value_of(p, "enable.ssl.certificate.verification") == "false");
    CHECK(value_of(p, "ssl.endpoint.identification.algorithm") == "none");

    c = sasl_config();
    c.sasl_mechanism = outbox::SaslMechanism::scram_sha_512;
    c.partitioner = outbox::KafkaPartitioner::key_hash;
    p = kafka::producer_properties(c);
    CHECK(value_of(p, "sasl.mechanisms") == "SCRAM-SHA-512");
    CHECK(value_of(p, "partitioner") == "murmur2_random");  // the Java client's key hash
    CHECK_FALSE(value_of(p, "sticky.partitioning.linger.ms"));
}

TEST_CASE("kafka config: the application's properties come last and win; debug logging",
          "[kafka]") {
    auto c = sasl_config();
    c.properties = {{"linger.ms", "50"}, {"socket.keepalive.enable", "true"}};
    c.logger.level = outbox::LogLevel::debug;
    const auto p = kafka::producer_properties(c);
    CHECK(value_of(p, "linger.ms") == "50");
    CHECK(value_of(p, "socket.keepalive.enable") == "true");
    REQUIRE(p.back() == std::pair<std::string, std::string>{"log_level", "7"});
}

TEST_CASE("kafka config: what cannot work is refused at once, naming it", "[kafka]") {
    CHECK(refusal(sasl_config()).empty());
    auto c = sasl_config();
    c.bootstrap_servers.clear();
    CHECK(refusal(c) == "KafkaDestination: no bootstrap_servers");
    c = sasl_config();
    c.topic = "orders/eu";
    CHECK(refusal(c).find("topic \"orders/eu\" is not a Kafka topic name") != std::string::npos);
    c = sasl_config();
    c.sasl_username.clear();
    CHECK(refusal(c).find("SASL needs sasl_username") != std::string::npos);
    c.security = outbox::KafkaSecurity::ssl;  // no SASL: no user needed
    CHECK(refusal(c).empty());
    c = sasl_config();
    c.partitions = 3;
    CHECK(refusal(c).find("give both partitions and replication_factor") != std::string::npos);
    c = sasl_config();
    c.max_in_flight_bytes = 1000;
    CHECK(refusal(c).find("max_in_flight_bytes must be at least max_message_size") !=
          std::string::npos);
    c = sasl_config();
    c.retry.max_attempts = 0;
    CHECK(refusal(c).find("retry.max_attempts") != std::string::npos);

    CHECK(kafka::is_valid_topic_name("a.b_c-D9"));
    CHECK_FALSE(kafka::is_valid_topic_name(".."));
    CHECK_FALSE(kafka::is_valid_topic_name(std::string(250, 'a')));
    CHECK(kafka::is_valid_topic_name(std::string(249, 'a')));
}

TEST_CASE("kafka config: Amazon MSK IAM is OAUTHBEARER with no user name or password", "[kafka]") {
    KafkaDestinationConfig c = sasl_config();
    c.sasl_username.clear();
    c.sasl_password.clear();
    c.sasl_mechanism = outbox::SaslMechanism::aws_msk_iam;
    c.aws_region = "eu-west-1";
    CHECK(refusal(c) == "KafkaDestination: aws_msk_iam needs credentials");
    c.credentials = std::make_shared<NoCredentials>();
    CHECK(refusal(c).empty());
    const auto p = kafka::producer_properties(c);
    CHECK(value_of(p, "sasl.mechanisms") == "OAUTHBEARER");
    CHECK(value_of(p, "security.protocol") == "sasl_ssl");
    CHECK_FALSE(value_of(p, "sasl.username"));
    CHECK_FALSE(value_of(p, "sasl.password"));
    CHECK(kafka::msk_iam_region(c) == "eu-west-1");
}
