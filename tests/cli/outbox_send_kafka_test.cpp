// `outbox send --to kafka://...`: the real program against the standalone mock cluster
// (read back with kcat) and against the SASL_SSL broker.
#include "catch.hpp"
#include "cli_run.hpp"
#include "kafka_mock.hpp"
#include "sasl_broker.hpp"

#include <simdjson.h>

#include <set>

using outbox::test::kcat_read;
using outbox::test::PeerProcess;
using outbox::test::SaslBroker;
using Clock = std::chrono::steady_clock;

namespace {

const std::string clean_env =
    "-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED=true";

outbox::test::CliRun run_send(const std::string& args, const std::string& input) {
    return outbox::test::run_outbox_send(OUTBOX_CLI_PATH, args, input, clean_env);
}

struct MockBroker {
    PeerProcess process{{OUTBOX_KAFKA_MOCK_BROKER_PATH, "--brokers", "3", "--topic", "cli:3"}};
    std::string bootstrap() const { return "127.0.0.1:" + std::to_string(process.port()); }
};

}  // namespace

TEST_CASE("send to Kafka: JSON Lines to a topic, a report line each, read back without keys") {
    MockBroker broker;
    std::string input;
    for (int i = 0; i < 30; ++i) input += "{\"event\":" + std::to_string(i) + "}\n";
    auto r = run_send("--to kafka://" + broker.bootstrap() + "/cli --plaintext --stats", input);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("delivered 30, failed 0") != std::string::npos);
    // --stats: the destination's own counters agree with the report.
    CHECK(r.err.find("accepted 30 (350 B), delivered 30 (350 B), failed 0, in flight 0") !=
          std::string::npos);
    CHECK(r.err.find("latency (30 delivered): p50 ") != std::string::npos);
    REQUIRE(r.report.size() == 30);
    simdjson::dom::parser parser;
    for (const auto& line : r.report) {
        simdjson::dom::element e = parser.parse(line);
        CHECK(std::string_view(e["status"]) == "delivered");
        CHECK(int64_t(e["partition"]) >= 0);
        CHECK(int64_t(e["offset"]) >= 0);
    }
    const auto records = kcat_read(broker.bootstrap(), "cli");
    REQUIRE(records.size() == 30);
    std::set<std::string> bodies;
    std::set<int> partitions;
    for (const auto& rec : records) {
        CHECK_FALSE(rec.key.has_value());
        bodies.insert(rec.payload);
        partitions.insert(rec.partition);
    }
    CHECK(bodies.size() == 30);
    CHECK(partitions.size() == 3);  // balanced by bytes: equal bodies spread over all three
}

TEST_CASE(
    "send to Kafka over SASL_SSL: delivers with the right password; a wrong password or "
    "an untrusted CA fails in seconds with exit 1, saying which, never printing it") {
    SaslBroker broker("secure");
    const std::string to = "--to kafka://" + broker.bootstrap() + "/secure --sasl-user alice ";
    auto ok = run_send(
        to + "--sasl-password-file " + broker.password_file() + " --tls-ca " + broker.ca_file(),
        "one\ntwo\nthree\n");
    INFO(ok.err);
    CHECK(ok.status == 0);
    CHECK(broker.records().size() == 3);

    auto start = Clock::now();
    auto wrong = run_send(to + "--sasl-password-file " + broker.wrong_password_file() +
                              " --tls-ca " + broker.ca_file(),
                          "four\n");
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(wrong.status == 1);
    CHECK(wrong.err.find("authentication failed") != std::string::npos);
    CHECK(wrong.err.find("Invalid username or password") != std::string::npos);
    CHECK(wrong.err.find("not-the-password") == std::string::npos);

    start = Clock::now();
    auto untrusted = run_send(to + "--sasl-password-file " + broker.password_file() + " --tls-ca " +
                                  broker.other_ca_file(),
                              "five\n");
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(untrusted.status == 1);
    CHECK(untrusted.err.find("TLS handshake failed") != std::string::npos);
    CHECK(untrusted.err.find("certificate verify failed") != std::string::npos);
    CHECK(untrusted.err.find(SaslBroker::password()) == std::string::npos);
    CHECK(broker.records().size() == 3);
}

TEST_CASE("send to Kafka: usage errors exit 2") {
    CHECK(run_send("--to kafka://127.0.0.1:9092 --plaintext", "x\n").status == 2);  // no topic
    CHECK(run_send("--to kafka://127.0.0.1:9092/t --sasl-user u", "x\n").status == 2);
    CHECK(run_send("--to kafka://127.0.0.1:9092/t --region eu-west-1", "x\n").status == 2);
    CHECK(run_send("--to https://sqs.eu-west-1.amazonaws.com/1/q --plaintext", "x\n").status == 2);
    CHECK(run_send("--to 'kafka://127.0.0.1:9092/bad topic' --plaintext", "x\n").status == 2);
    CHECK(run_send("--to kafka://127.0.0.1:9092/t --plaintext --max-attempts 5x", "x\n").status ==
          2);
    CHECK(run_send("--to kafka://127.0.0.1:9092/t --plaintext --deadline 0", "x\n").status == 2);
    CHECK(
        run_send("--to kafka://127.0.0.1:9092/t --plaintext --stage-threshold 10", "x\n").status ==
        2);  // needs --stage
}

TEST_CASE("send to Kafka: -X sets librdkafka properties; ones it refuses are usage errors") {
    MockBroker broker;
    // A producer limit of 1000 bytes, set with -X: a 2000-byte event is refused by it.
    const std::string big = "{\"pad\":\"" + std::string(2000, 'x') + "\"}\n";
    auto limited = run_send(
        "--to kafka://" + broker.bootstrap() + "/cli --plaintext -X message.max.bytes=1000 --stats",
        "{\"small\":1}\n" + big);
    INFO(limited.err);
    CHECK(limited.status == 1);
    CHECK(limited.err.find("delivered 1, failed 1") != std::string::npos);
    CHECK(limited.err.find("larger than the destination accepts") != std::string::npos);

    const std::string to = "--to kafka://127.0.0.1:9092/t --plaintext ";
    auto unknown = run_send(to + "-X no.such.property=1", "x\n");
    CHECK(unknown.status == 2);
    CHECK(unknown.err.find("-X no.such.property: ") != std::string::npos);
    CHECK(unknown.err.find("No such configuration property") != std::string::npos);
    auto bad_value = run_send(to + "--kafka-property linger.ms=soon", "x\n");
    CHECK(bad_value.status == 2);
    CHECK(bad_value.err.find("--kafka-property linger.ms: ") != std::string::npos);
    CHECK(run_send(to + "-X linger.ms", "x\n").status == 2);  // no =VALUE
    CHECK(run_send("--to https://sqs.eu-west-1.amazonaws.com/1/q -X linger.ms=5", "x\n").status ==
          2);  // -X is for Kafka
}
