// The pieces of KafkaDestination that need no broker: the least-bytes choice, the meaning of
// librdkafka's errors, and the CloudEvents binary-mode headers.
#include "catch.hpp"
#include "kafka/kafka_errors.hpp"

#include <outbox/envelope.hpp>
#include <outbox/kafka_destination.hpp>
#include "kafka/least_bytes.hpp"

#include <algorithm>
#include <map>
#include <random>

using outbox::detail::classify_kafka_error;
using outbox::detail::LeastBytesBalancer;

TEST_CASE("least bytes: each message goes to the partition given the fewest bytes", "[kafka]") {
    LeastBytesBalancer balancer;
    CHECK(balancer.pick(3, 100) == 0);
    CHECK(balancer.pick(3, 10) == 1);
    CHECK(balancer.pick(3, 10) == 2);
    CHECK(balancer.pick(3, 10) == 1);  // a tie: the lowest number
    CHECK(balancer.given() == std::vector<std::uint64_t>{100, 20, 10});

    // Random sizes: no two partitions ever differ by more than the largest message.
    LeastBytesBalancer fair;
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::size_t> size(1, 5000);
    for (int i = 0; i < 20000; ++i) fair.pick(6, size(rng));
    const auto given = fair.given();
    const auto [lo, hi] = std::minmax_element(given.begin(), given.end());
    CHECK(*hi - *lo <= 5000);
}

TEST_CASE("least bytes: a new partition count starts the tally afresh", "[kafka]") {
    LeastBytesBalancer balancer;
    for (int i = 0; i < 10; ++i) balancer.pick(2, 100);
    CHECK(balancer.given() == std::vector<std::uint64_t>{500, 500});
    CHECK(balancer.pick(4, 1) == 0);
    CHECK(balancer.given() == std::vector<std::uint64_t>{1, 0, 0, 0});
}

TEST_CASE("librdkafka errors map to outbox errors, retryable or not", "[kafka]") {
    using E = outbox::Errc;
    const auto not_persisted = RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
    const auto maybe = RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
    CHECK_FALSE(classify_kafka_error(RD_KAFKA_RESP_ERR_NO_ERROR, not_persisted));
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__PURGE_QUEUE, not_persisted) ==
          boost::asio::error::operation_aborted);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, not_persisted) ==
          E::topic_not_found);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, not_persisted) ==
          E::payload_too_large);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__AUTHENTICATION, not_persisted) ==
          E::authentication_failed);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__SSL, not_persisted) == E::tls_error);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, not_persisted) == E::timeout);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, maybe) == E::outcome_unknown);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, not_persisted) ==
          E::service_unavailable);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR_INVALID_RECORD, not_persisted) ==
          E::service_error);
    CHECK(classify_kafka_error(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, not_persisted) ==
          E::service_error);
    CHECK(outbox::is_retryable(classify_kafka_error(RD_KAFKA_RESP_ERR__TRANSPORT, not_persisted)));
    CHECK_FALSE(outbox::is_retryable(
        classify_kafka_error(RD_KAFKA_RESP_ERR__AUTHENTICATION, not_persisted)));
}

TEST_CASE("CloudEvents binary mode: ce_ headers with an id and a time", "[kafka]") {
    outbox::CloudEventAttributes a;
    a.source = "/orders";
    a.type = "com.example.order.created";
    a.subject = "order-1";
    auto headers = outbox::cloudevents_kafka_headers(a);
    std::map<std::string, std::string> h(headers.begin(), headers.end());
    CHECK(h.size() == 7);
    CHECK(h["ce_specversion"] == "1.0");
    CHECK(h["ce_id"].size() == 36);
    CHECK(h["ce_source"] == "/orders");
    CHECK(h["ce_type"] == "com.example.order.created");
    CHECK(h["ce_subject"] == "order-1");
    CHECK(h["ce_time"].back() == 'Z');
    CHECK(h["content-type"] == "application/json");
    CHECK(outbox::cloudevents_kafka_headers(a)[1].second != h["ce_id"]);  // a new id each time
    a.id = "fixed";
    a.time = "2026-11-22T00:00:00Z";
    a.subject.clear();
    auto fixed = outbox::cloudevents_kafka_headers(a);
    CHECK(fixed.size() == 6);
    CHECK(fixed[1].second == "fixed");
    CHECK(fixed[4].second == "2026-11-22T00:00:00Z");
}

TEST_CASE("the librdkafka properties whose values are never shown", "[kafka]") {
    for (const char* secret :
         {"sasl.password", "ssl.key.password", "ssl.keystore.password",
          "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "ssl.key.pem", "ssl_key"})
        CHECK(outbox::is_secret_kafka_property(secret));
    for (const char* plain : {"bootstrap.servers", "ssl.certificate.pem", "ssl.ca.location",
                              "sasl.username", "linger.ms"})
        CHECK_FALSE(outbox::is_secret_kafka_property(plain));
}
