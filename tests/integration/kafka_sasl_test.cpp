// KafkaDestination with SASL PLAIN over TLS, against a broker that enforces both (Sarama's
// MockBroker behind tests/peers/sasl_broker): the right credentials deliver, a wrong password
// and an untrusted CA fail within seconds and say which, and the password never reaches a log.
#include "catch.hpp"
#include "destination_runs.hpp"
#include "sasl_broker.hpp"
#include "throwing_credentials.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/kafka_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <mutex>
#include <stdexcept>

namespace asio = boost::asio;
using boost::system::error_code;
using outbox::test::close_destination;
using outbox::test::SaslBroker;
using outbox::test::send_all;
using Clock = std::chrono::steady_clock;

namespace {

struct CapturedLog {
    std::mutex mutex;
    std::string text;
    outbox::Logger logger() {
        outbox::Logger l;
        l.level = outbox::LogLevel::debug;
        l.sink = [this](outbox::LogLevel, std::string_view line) {
            std::lock_guard lock(mutex);
            text.append(line).push_back('\n');
        };
        return l;
    }
};

outbox::KafkaDestinationConfig sasl_config(const SaslBroker& broker, const std::string& topic) {
    outbox::KafkaDestinationConfig c;
    c.bootstrap_servers = broker.bootstrap();
    c.topic = topic;
    c.sasl_username = SaslBroker::user();
    c.sasl_password = SaslBroker::password();
    c.tls.ca_file = broker.ca_file();
    return c;  // security: sasl_ssl, the default
}

// The same, for Amazon MSK's IAM tokens (OAUTHBEARER) in the broker's region; credentials
// are each test's.
outbox::KafkaDestinationConfig msk_iam_config(const SaslBroker& broker, const std::string& topic) {
    auto c = sasl_config(broker, topic);
    c.sasl_username.clear();
    c.sasl_password.clear();
    c.sasl_mechanism = outbox::SaslMechanism::aws_msk_iam;
    c.aws_region = SaslBroker::msk_region();
    return c;
}

outbox::Message message(std::string body) {
    outbox::Message m;
    m.body = std::move(body);
    m.attributes.push_back({"source", "String", "sasl-test"});
    return m;
}

}  // namespace

TEST_CASE(
    "SASL PLAIN over TLS: the right credentials deliver, idempotently, and the password "
    "never reaches the log",
    "[kafka][sasl]") {
    SaslBroker broker("secure");
    CapturedLog log;
    asio::io_context io;
    auto config = sasl_config(broker, "secure");
    config.logger = log.logger();
    config.properties = {{"debug", "conf,security,broker,protocol"}};
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        std::vector<outbox::Message> messages;
        for (int i = 0; i < 20; ++i) messages.push_back(message("secure " + std::to_string(i)));
        for (auto& o : send_all(io, kafka, messages)) {
            CHECK_FALSE(o.ec);
            CHECK(o.receipt.partition == 0);
        }
        CHECK_FALSE(close_destination(io, kafka, std::chrono::seconds(5)));
    }
    const auto records = broker.records();
    REQUIRE(records.size() == 20);
    for (int i = 0; i < 20; ++i) {
        CHECK(records[i].payload == "secure " + std::to_string(i));
        REQUIRE(records[i].headers.size() == 1);
        CHECK(records[i].headers[0].second == "sasl-test");
    }
    std::lock_guard lock(log.mutex);
    CHECK(log.text.find("SASL") != std::string::npos);  // the debug log did speak of it
    CHECK(log.text.find(SaslBroker::password()) == std::string::npos);
}

TEST_CASE("SASL PLAIN over TLS: a wrong password fails within seconds, saying so",
          "[kafka][sasl]") {
    SaslBroker broker("secure");
    asio::io_context io;
    auto config = sasl_config(broker, "secure");
    config.sasl_password = "not-the-password";
    outbox::KafkaDestination kafka(io.get_executor(), config);
    const auto start = Clock::now();
    auto outcomes = send_all(io, kafka, {message("refused 1"), message("refused 2")});
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    for (auto& o : outcomes) {
        CHECK(o.ec == outbox::Errc::authentication_failed);
        CHECK(o.receipt.diagnostics.message.find("Invalid username or password") !=
              std::string::npos);
        CHECK(o.receipt.diagnostics.message.find("not-the-password") == std::string::npos);
    }
    CHECK(broker.records().empty());
}

TEST_CASE("SASL PLAIN over TLS: a broker certificate from an untrusted CA fails within seconds",
          "[kafka][sasl]") {
    SaslBroker broker("secure");
    asio::io_context io;
    auto config = sasl_config(broker, "secure");
    config.tls.ca_file = broker.other_ca_file();
    outbox::KafkaDestination kafka(io.get_executor(), config);
    const auto start = Clock::now();
    auto outcomes = send_all(io, kafka, {message("untrusted")});
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(outcomes[0].ec == outbox::Errc::tls_error);
    CHECK(outcomes[0].receipt.diagnostics.message.find("certificate verify failed") !=
          std::string::npos);
    CHECK(broker.records().empty());
}

TEST_CASE(
    "with partitions and a replication factor the topic is created through the Admin "
    "API before the first message",
    "[kafka][sasl]") {
    SaslBroker broker("created");
    CapturedLog log;
    asio::io_context io;
    auto config = sasl_config(broker, "created");
    config.partitions = 1;
    config.replication_factor = 1;
    config.logger = log.logger();
    config.logger.level = outbox::LogLevel::info;
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        auto outcomes = send_all(io, kafka, {message("after creation")});
        CHECK_FALSE(outcomes[0].ec);
        CHECK_FALSE(close_destination(io, kafka, std::chrono::seconds(5)));
    }
    REQUIRE(broker.records().size() == 1);
    std::lock_guard lock(log.mutex);
    CHECK(log.text.find("created topic \"created\" with 1 partitions") != std::string::npos);
}

TEST_CASE("creating the topic is refused: producing goes ahead when it exists", "[kafka][sasl]") {
    // The broker refuses to create topics whose names start with "_" (not authorized).
    SaslBroker broker("_reserved");
    CapturedLog log;
    asio::io_context io;
    auto config = sasl_config(broker, "_reserved");
    config.partitions = 1;
    config.replication_factor = 1;
    config.logger = log.logger();
    config.logger.level = outbox::LogLevel::warning;
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        CHECK_FALSE(send_all(io, kafka, {message("exists anyway")})[0].ec);
    }
    REQUIRE(broker.records().size() == 1);
    {
        std::lock_guard lock(log.mutex);
        CHECK(log.text.find("creating topic \"_reserved\" failed: TOPIC_AUTHORIZATION_FAILED") !=
              std::string::npos);
    }
    CHECK(broker.records().size() == 1);
}

TEST_CASE(
    "Amazon MSK IAM: OAUTHBEARER with a token our signer made from the credentials provider; "
    "the broker checks its signature; a wrong key is refused",
    "[kafka][sasl][msk]") {
    SaslBroker broker("msk-iam", SaslBroker::Mechanism::msk_iam);
    CapturedLog log;
    asio::io_context io;
    auto config = msk_iam_config(broker, "msk-iam");
    config.credentials = outbox::make_static_credentials(
        io.get_executor(),
        {SaslBroker::msk_access_key(), SaslBroker::msk_secret(), SaslBroker::msk_session_token()});
    config.logger = log.logger();
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        std::vector<outbox::Message> messages;
        for (int i = 0; i < 10; ++i) messages.push_back(message("iam " + std::to_string(i)));
        for (auto& o : send_all(io, kafka, messages)) {
            INFO(o.receipt.diagnostics.message);
            CHECK_FALSE(o.ec);
        }
        CHECK_FALSE(close_destination(io, kafka, std::chrono::seconds(5)));
    }
    const auto records = broker.records();
    REQUIRE(records.size() == 10);
    CHECK(records[9].payload == "iam 9");
    {
        std::lock_guard lock(log.mutex);
        CHECK(log.text.find(SaslBroker::msk_secret()) == std::string::npos);
    }

    // Signed with another secret: the broker's check fails, and the sends say why.
    auto wrong = config;
    wrong.credentials = outbox::make_static_credentials(
        io.get_executor(),
        {SaslBroker::msk_access_key(), "not-the-secret", SaslBroker::msk_session_token()});
    outbox::KafkaDestination refused(io.get_executor(), wrong);
    const auto start = Clock::now();
    for (auto& o : send_all(io, refused, {message("refused")})) {
        CHECK(o.ec == outbox::Errc::authentication_failed);
        CHECK(o.receipt.diagnostics.message.find("not-the-secret") == std::string::npos);
    }
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(broker.records().size() == 10);

    // What cannot work is refused at construction.
    auto no_credentials = config;
    no_credentials.credentials = nullptr;
    CHECK_THROWS_AS(outbox::KafkaDestination(io.get_executor(), no_credentials),
                    std::invalid_argument);
}

TEST_CASE("SASL PLAIN credentials rotated in place: after a refusal, the new password delivers",
          "[kafka][sasl]") {
    SaslBroker broker("rotated");
    CapturedLog log;
    asio::io_context io;
    auto config = sasl_config(broker, "rotated");
    config.sasl_password = "last-month's-password";
    config.logger = log.logger();
    outbox::KafkaDestination kafka(io.get_executor(), config);
    for (auto& o : send_all(io, kafka, {message("before rotation")}))
        CHECK(o.ec == outbox::Errc::authentication_failed);
    kafka.set_sasl_credentials(SaslBroker::user(), SaslBroker::password());
    for (auto& o : send_all(io, kafka, {message("after rotation")})) {
        INFO(o.receipt.diagnostics.message);
        CHECK_FALSE(o.ec);
    }
    CHECK_FALSE(close_destination(io, kafka, std::chrono::seconds(5)));
    const auto records = broker.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].payload == "after rotation");
    CHECK_THROWS_AS(kafka.set_sasl_credentials("", "x"), std::invalid_argument);
    std::lock_guard lock(log.mutex);
    CHECK(log.text.find(SaslBroker::password()) == std::string::npos);
    CHECK(log.text.find("last-month's-password") == std::string::npos);
}

TEST_CASE(
    "SASL credentials rotated while a handshake with the old ones is in flight: its late "
    "refusal fails nothing, the message goes with the new ones",
    "[kafka][sasl]") {
    // The broker answers a refusal 1.5 s late: the old password's handshake is still open
    // when the credentials are rotated, and refused after.
    SaslBroker broker("rotated-in-flight", SaslBroker::Mechanism::plain,
                      std::chrono::milliseconds(1500));
    asio::io_context io;
    auto config = sasl_config(broker, "rotated-in-flight");
    config.sasl_password = "last-month's-password";
    outbox::KafkaDestination kafka(io.get_executor(), config);
    std::optional<boost::system::error_code> outcome;
    std::string why;
    outbox::Message m = message("sent as the password changed");
    kafka.async_send(std::move(m), [&](boost::system::error_code ec, outbox::Receipt r) {
        outcome = ec;
        why = r.diagnostics.message;
    });
    // Rotate once the broker holds the old password's handshake.
    const auto until = Clock::now() + std::chrono::seconds(20);
    io.restart();
    while (broker.authentications() == 0 && Clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(20));
    REQUIRE(broker.authentications() == 1);
    kafka.set_sasl_credentials(SaslBroker::user(), SaslBroker::password());
    while (!outcome && Clock::now() < until) io.run_one_for(std::chrono::milliseconds(50));
    REQUIRE(outcome);
    INFO(why);
    CHECK_FALSE(*outcome);
    CHECK(broker.authentications() >= 2);  // the refused one, then the new password's
    CHECK_FALSE(close_destination(io, kafka, std::chrono::seconds(5)));
    const auto records = broker.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].payload == "sent as the password changed");
}

TEST_CASE("Amazon MSK IAM: a credentials provider that fails leaves no token; sends fail, logged",
          "[kafka][sasl][msk]") {
    const bool throws = GENERATE(false, true);
    INFO((throws ? "a provider that throws" : "a provider without keys"));
    SaslBroker broker("msk-iam", SaslBroker::Mechanism::msk_iam);
    CapturedLog log;
    asio::io_context io;
    auto config = msk_iam_config(broker, "msk-iam");
    if (throws)
        config.credentials = std::make_shared<outbox::test::ThrowingCredentials>(
            io.get_executor(), "the vault is sealed");
    else
        config.credentials = outbox::make_rotatable_credentials(io.get_executor(), {});  // no keys
    config.retry.message_deadline = std::chrono::seconds(3);
    config.logger = log.logger();
    outbox::KafkaDestination kafka(io.get_executor(), config);
    for (auto& o : send_all(io, kafka, {message("no token")})) CHECK(o.ec);
    CHECK(broker.records().empty());
    std::lock_guard lock(log.mutex);
    CHECK(log.text.find("no MSK IAM token: ") != std::string::npos);
    if (throws)
        CHECK(log.text.find("the credentials provider threw: the vault is sealed") !=
              std::string::npos);
}
