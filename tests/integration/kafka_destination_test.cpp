// KafkaDestination against librdkafka's mock cluster (three brokers speaking the Kafka
// protocol on 127.0.0.1, faults on demand), with every record read back by kcat.
#include "catch.hpp"
#include "destination_runs.hpp"
#include "kafka_mock.hpp"
#include "local_peers.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/json_string.hpp>
#include <outbox/kafka_destination.hpp>
#include <outbox/send_blocking.hpp>

#include <simdjson.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>

namespace asio = boost::asio;
using boost::system::error_code;
using outbox::test::check_accounted;
using outbox::test::close_destination;
using outbox::test::DeadLetters;
using outbox::test::KafkaMockCluster;
using outbox::test::kcat_read;
using outbox::test::Outcome;
using outbox::test::send_all;
using outbox::test::text_message;
using Clock = std::chrono::steady_clock;

namespace {

outbox::KafkaDestinationConfig config_for(const KafkaMockCluster& cluster, std::string topic) {
    outbox::KafkaDestinationConfig c;
    c.bootstrap_servers = cluster.bootstrap();
    c.topic = std::move(topic);
    c.security = outbox::KafkaSecurity::plaintext;  // the mock has neither TLS nor SASL
    return c;
}

// Every delivered receipt names a record that kcat found at that partition and offset, with
// that body; nothing else is in the topic.
void check_exactly_delivered(const std::vector<Outcome>& outcomes,
                             const std::vector<std::string>& bodies,
                             const std::vector<outbox::test::KafkaRecord>& records) {
    std::map<std::pair<int, long long>, std::string> found;
    for (const auto& r : records) {
        CHECK_FALSE(r.key.has_value());
        CHECK(found.emplace(std::pair<int, long long>(r.partition, r.offset), r.payload).second);
    }
    std::size_t delivered = 0;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        CHECK(outcomes[i].completions == 1);
        if (outcomes[i].ec) continue;
        ++delivered;
        auto it = found.find({outcomes[i].receipt.partition, outcomes[i].receipt.offset});
        INFO("message " << i << " delivered to partition " << outcomes[i].receipt.partition
                        << " offset " << outcomes[i].receipt.offset << "; " << records.size()
                        << " records read back");
        REQUIRE(it != found.end());
        CHECK(it->second == bodies[i]);
    }
    CHECK(records.size() == delivered);
}

}  // namespace

TEST_CASE("messages arrive without keys, with headers, balanced over partitions by bytes",
          "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("orders", 4);
    asio::io_context io;
    outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "orders"));

    std::vector<outbox::Message> messages;
    std::vector<std::string> bodies;
    std::size_t largest = 0;
    for (int i = 0; i < 200; ++i) {
        // Sizes from 10 bytes to 5 KB, so a count-based balancer would be uneven in bytes.
        const std::size_t size = 10 + (i * 7919) % 5000;
        std::string body = "event-" + std::to_string(i) + "-" + std::string(size, 'x');
        largest = std::max(largest, body.size());
        outbox::Message m = text_message(body);
        m.attributes.push_back({"trace-id", "String", "t-" + std::to_string(i)});
        bodies.push_back(std::move(body));
        messages.push_back(std::move(m));
    }
    auto outcomes = send_all(io, kafka, messages);
    for (auto& o : outcomes) {
        REQUIRE_FALSE(o.ec);
        CHECK(o.receipt.topic == "orders");
        CHECK(o.receipt.partition >= 0);
        CHECK(o.receipt.offset >= 0);
    }
    CHECK_FALSE(close_destination(io, kafka));
    const auto records = kcat_read(cluster.bootstrap(), "orders");
    check_exactly_delivered(outcomes, bodies, records);

    std::map<int, std::size_t> bytes;
    for (const auto& r : records) {
        bytes[r.partition] += r.payload.size();
        REQUIRE(r.headers.size() == 1);
        CHECK(r.headers[0].first == "trace-id");
        CHECK(r.headers[0].second.rfind("t-", 0) == 0);
    }
    REQUIRE(bytes.size() == 4);
    auto [lo, hi] = std::minmax_element(bytes.begin(), bytes.end(),
                                        [](auto& a, auto& b) { return a.second < b.second; });
    INFO("least " << lo->second << " bytes, most " << hi->second);
    CHECK(hi->second - lo->second <= largest + 64);  // headers count too
    CHECK(kafka.stats().delivered == 200);
}

TEST_CASE("a message sent as others complete carries nothing of theirs", "[kafka]") {
    // Each completion of a message with a key and headers sends one without: the destination
    // keeps the state of completed messages for the next ones, which must start empty.
    KafkaMockCluster cluster(3);
    cluster.create_topic("reuse", 2);
    asio::io_context io;
    auto config = config_for(cluster, "reuse");
    config.partitioner = outbox::KafkaPartitioner::key_hash;  // group_id becomes the key
    outbox::KafkaDestination kafka(io.get_executor(), config);

    const int count = 300;
    int completed = 0, failed = 0;
    const auto count_outcome = [&](error_code ec, const outbox::Receipt&) {
        ++completed;
        failed += ec ? 1 : 0;
    };
    for (int i = 0; i < count; ++i) {
        outbox::Message full = text_message("full-" + std::to_string(i));
        full.group_id = "group-" + std::to_string(i % 7);
        full.attributes.push_back({"origin", "String", "full-" + std::to_string(i)});
        kafka.async_send(std::move(full), [&, i](error_code ec, const outbox::Receipt& r) {
            count_outcome(ec, r);
            kafka.async_send(text_message("bare-" + std::to_string(i)), count_outcome);
        });
    }
    while (completed < 2 * count && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(completed == 2 * count);
    CHECK(failed == 0);
    CHECK_FALSE(close_destination(io, kafka));

    std::size_t full = 0, bare = 0;
    for (const auto& r : kcat_read(cluster.bootstrap(), "reuse")) {
        INFO(r.payload);
        if (r.payload.rfind("bare-", 0) == 0) {
            ++bare;
            CHECK_FALSE(r.key.has_value());
            CHECK(r.headers.empty());
        } else {
            ++full;
            REQUIRE(r.headers.size() == 1);
            CHECK(r.headers[0].second == r.payload);
            CHECK(r.key.has_value());
        }
    }
    CHECK(full == count);
    CHECK(bare == count);
}

TEST_CASE("messages waiting for their topic fail when the destination is destroyed", "[kafka]") {
    // The topic is created before the first message; the event loop has not run, so all wait,
    // and nothing has reached librdkafka when the destructor fails them one by one.
    KafkaMockCluster cluster(3);
    asio::io_context io;
    auto config = config_for(cluster, "created-first");
    config.partitions = 2;
    config.replication_factor = 1;
    std::vector<error_code> outcomes;
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        for (int i = 0; i < 5; ++i)
            kafka.async_send(
                text_message("waits " + std::to_string(i)),
                [&](error_code ec, const outbox::Receipt&) { outcomes.push_back(ec); });
    }
    io.run_for(std::chrono::seconds(30));  // a bound: it returns once the completions ran
    REQUIRE(outcomes.size() == 5);
    for (const auto& ec : outcomes) CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("a broker down and up again: the messages for its partitions wait, then all arrive",
          "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("outage", 3);
    for (int p = 0; p < 3; ++p) cluster.set_leader("outage", p, p + 1);
    asio::io_context io;
    outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "outage"));
    // Connect first, so the outage below strikes an established producer.
    REQUIRE_FALSE(send_all(io, kafka, {text_message("warm-up")})[0].ec);

    cluster.broker_down(2);
    std::vector<outbox::Message> messages;
    std::vector<std::string> bodies{"warm-up"};
    for (int i = 0; i < 60; ++i) {
        bodies.push_back("during outage " + std::to_string(i));
        messages.push_back(text_message(bodies.back()));
    }
    // The fault schedule: the broker stays down for 1.5 s, while messages are produced.
    asio::steady_timer outage(io, std::chrono::milliseconds(1500));
    std::size_t waiting_when_back = 0;
    outage.async_wait([&](error_code) {
        waiting_when_back = kafka.stats().in_flight;
        cluster.broker_up(2);
    });
    auto outcomes = send_all(io, kafka, messages);
    CHECK(waiting_when_back > 0);  // the outage held messages back
    for (auto& o : outcomes) CHECK_FALSE(o.ec);
    CHECK_FALSE(close_destination(io, kafka));
    outcomes.insert(outcomes.begin(), Outcome{{}, {}, 1});
    const auto records = kcat_read(cluster.bootstrap(), "outage");
    CHECK(records.size() == 61);
    std::set<std::string> got;
    for (const auto& r : records) got.insert(r.payload);
    CHECK(got.size() == 61);  // none twice
}

TEST_CASE("a leader change moves production to the new leader", "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("moving", 2);
    cluster.set_leader("moving", 0, 1);
    cluster.set_leader("moving", 1, 2);
    asio::io_context io;
    outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "moving"));
    std::vector<std::string> bodies;
    std::vector<outbox::Message> first, second;
    for (int i = 0; i < 40; ++i) {
        bodies.push_back("before " + std::to_string(i));
        first.push_back(text_message(bodies.back()));
    }
    auto outcomes = send_all(io, kafka, first);
    cluster.set_leader("moving", 0, 3);
    cluster.set_leader("moving", 1, 3);
    for (int i = 0; i < 40; ++i) {
        bodies.push_back("after " + std::to_string(i));
        second.push_back(text_message(bodies.back()));
    }
    auto more = send_all(io, kafka, second);
    outcomes.insert(outcomes.end(), more.begin(), more.end());
    for (auto& o : outcomes) CHECK_FALSE(o.ec);
    CHECK_FALSE(close_destination(io, kafka));
    check_exactly_delivered(outcomes, bodies, kcat_read(cluster.bootstrap(), "moving"));
}

TEST_CASE(
    "retriable produce errors are retried; permanent ones fail their messages; every "
    "message is accounted for once",
    "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("faults", 3);
    asio::io_context io;
    auto config = config_for(cluster, "faults");
    config.linger = std::chrono::milliseconds(0);
    // The mock does not check an idempotent producer's sequence numbers: a batch sent behind
    // one that failed would be accepted (a real broker refuses it as out of order), and
    // librdkafka would then ack the failed one implicitly without its being written. One
    // request in flight per connection keeps the mock honest.
    config.properties = {{"max.in.flight.requests.per.connection", "1"}};
    outbox::KafkaDestination kafka(io.get_executor(), config);
    DeadLetters dead;
    dead.attach(kafka);
    const Outcome warm_up = send_all(io, kafka, {text_message("warm-up")})[0];
    REQUIRE_FALSE(warm_up.ec);

    // Kafka error codes: 6 NOT_LEADER_FOR_PARTITION, 7 REQUEST_TIMED_OUT, 19
    // NOT_ENOUGH_REPLICAS (retriable); 87 INVALID_RECORD (permanent).
    cluster.push_produce_errors({6, 19, 7, 19, 6, 87, 19, 6});
    std::vector<std::string> bodies{"warm-up"};
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 150; ++i) {
        bodies.push_back("fault " + std::to_string(i));
        messages.push_back(text_message(bodies.back()));
    }
    auto outcomes = send_all(io, kafka, messages);
    outcomes.insert(outcomes.begin(), warm_up);
    std::size_t failed = 0;
    for (auto& o : outcomes) {
        if (!o.ec) continue;
        ++failed;
        INFO(o.ec.message() << " " << o.receipt.diagnostics.code << " "
                            << o.receipt.diagnostics.message);
        // Refused; or, when an earlier attempt of the batch timed out (it may have been
        // written then), of unknown outcome.
        CHECK((o.ec == outbox::Errc::service_error || o.ec == outbox::Errc::outcome_unknown));
        CHECK(o.receipt.diagnostics.code == "INVALID_RECORD");
    }
    CHECK(failed >= 1);  // one batch met the permanent error
    CHECK(failed < 150);
    CHECK_FALSE(close_destination(io, kafka));
    check_exactly_delivered(outcomes, bodies, kcat_read(cluster.bootstrap(), "faults"));
    check_accounted(outcomes, bodies, kafka.stats(), dead);
}

TEST_CASE("a full queue makes sends wait; a waiting send can be cancelled", "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("full", 2);
    asio::io_context io;
    auto config = config_for(cluster, "full");
    config.max_in_flight_messages = 5;
    outbox::KafkaDestination kafka(io.get_executor(), config);

    std::vector<Outcome> outcomes(301);
    std::size_t done = 0;
    asio::cancellation_signal cancel_middle, cancel_last;
    std::vector<std::string> bodies;
    for (int i = 0; i < 301; ++i) {
        bodies.push_back("bounded " + std::to_string(i));
        auto handler = [&, i](error_code ec, outbox::Receipt r) {
            outcomes[i].ec = ec;
            outcomes[i].receipt = std::move(r);
            ++outcomes[i].completions;
            ++done;
        };
        if (i == 150)
            kafka.async_send(text_message(bodies.back()),
                             asio::bind_cancellation_slot(cancel_middle.slot(), handler));
        else if (i == 300)
            kafka.async_send(text_message(bodies.back()),
                             asio::bind_cancellation_slot(cancel_last.slot(), handler));
        else
            kafka.async_send(text_message(bodies.back()), handler);
    }
    CHECK(kafka.stats().waits_for_room > 0);
    cancel_middle.emit(asio::cancellation_type::terminal);  // it waits behind 145 others
    cancel_last.emit(asio::cancellation_type::terminal);    // and this one behind 294
    while (done < 301 && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(done == 301);
    CHECK(outcomes[150].ec == asio::error::operation_aborted);
    CHECK(outcomes[300].ec == asio::error::operation_aborted);
    for (int i = 0; i < 300; ++i)
        if (i != 150) CHECK_FALSE(outcomes[i].ec);
    CHECK_FALSE(close_destination(io, kafka));
    check_exactly_delivered(outcomes, bodies, kcat_read(cluster.bootstrap(), "full"));
}

TEST_CASE("close past its deadline purges what is left; destruction never hangs", "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("stuck", 3);
    {
        asio::io_context io;
        outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "stuck"));
        REQUIRE_FALSE(send_all(io, kafka, {text_message("warm-up")})[0].ec);
        for (int b = 1; b <= 3; ++b) cluster.broker_down(b);
        std::vector<error_code> results;
        std::vector<outbox::Receipt> receipts;
        for (int i = 0; i < 20; ++i)
            kafka.async_send(text_message("stuck " + std::to_string(i)),
                             [&](error_code ec, outbox::Receipt r) {
                                 results.push_back(ec);
                                 receipts.push_back(std::move(r));
                             });
        const auto start = Clock::now();
        std::optional<error_code> closed, overlapping;
        kafka.async_close(std::chrono::milliseconds(300), [&](error_code ec) { closed = ec; });
        kafka.async_close(std::chrono::seconds(30), [&](error_code ec) { overlapping = ec; });
        io.restart();  // send_all ran it out of work
        while (!closed && io.run_one_for(std::chrono::seconds(10)) != 0) {
        }
        REQUIRE(closed);
        CHECK(*closed == outbox::Errc::close_timeout);
        CHECK(Clock::now() - start < std::chrono::seconds(3));
        io.poll();
        REQUIRE(overlapping);  // a close while one runs completes at once
        CHECK(*overlapping == asio::error::operation_aborted);
        // One after the close ended completes as that one ended.
        CHECK(close_destination(io, kafka, std::chrono::seconds(30)) ==
              outbox::Errc::close_timeout);
        REQUIRE(results.size() == 20);  // all completed before close did
        for (auto& ec : results) CHECK(ec == asio::error::operation_aborted);
        for (auto& r : receipts) {
            INFO(r.diagnostics.message);
            CHECK(r.diagnostics.message.starts_with("the close deadline passed"));
            CHECK(r.attempts == 1);  // librdkafka had it
        }
        auto late = send_all(io, kafka, {text_message("too late")});
        CHECK(late[0].ec == asio::error::operation_aborted);
        for (int b = 1; b <= 3; ++b) cluster.broker_up(b);
    }
    {
        asio::io_context io;
        auto kafka = std::make_unique<outbox::KafkaDestination>(io.get_executor(),
                                                                config_for(cluster, "stuck"));
        for (int b = 1; b <= 3; ++b) cluster.broker_down(b);
        std::vector<error_code> results;
        std::vector<std::string> reasons;
        for (int i = 0; i < 10; ++i)
            kafka->async_send(text_message("doomed " + std::to_string(i)),
                              [&](error_code ec, outbox::Receipt r) {
                                  results.push_back(ec);
                                  reasons.push_back(r.diagnostics.message);
                              });
        const auto start = Clock::now();
        kafka.reset();
        CHECK(Clock::now() - start < std::chrono::seconds(5));
        io.restart();
        io.run_for(std::chrono::seconds(10));  // returns once nothing is left to do
        CHECK(io.stopped());
        REQUIRE(results.size() == 10);
        for (auto& ec : results) CHECK(ec == asio::error::operation_aborted);
        for (auto& why : reasons) {
            INFO(why);
            CHECK(why.starts_with("the destination was destroyed"));
            CHECK(why.find("at close") == std::string::npos);
        }
    }
}

TEST_CASE(
    "messages that outlive their deadline while the brokers are away fail with timeout, "
    "naming the connection error",
    "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("deadline", 2);
    asio::io_context io;
    auto config = config_for(cluster, "deadline");
    config.retry.message_deadline = std::chrono::milliseconds(1000);
    outbox::KafkaDestination kafka(io.get_executor(), config);
    REQUIRE_FALSE(send_all(io, kafka, {text_message("warm-up")})[0].ec);
    for (int b = 1; b <= 3; ++b) cluster.broker_down(b);
    const auto start = Clock::now();
    auto outcomes = send_all(io, kafka, {text_message("late 1"), text_message("late 2")});
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    for (auto& o : outcomes) {
        INFO(o.receipt.diagnostics.code << ": " << o.receipt.diagnostics.message);
        CHECK(o.ec == outbox::Errc::timeout);
        CHECK(outbox::is_retryable(o.ec));
        CHECK(o.receipt.diagnostics.code == "_MSG_TIMED_OUT");
        CHECK(o.receipt.diagnostics.message.find("last connection error") != std::string::npos);
    }
    for (int b = 1; b <= 3; ++b) cluster.broker_up(b);
    CHECK(kcat_read(cluster.bootstrap(), "deadline").size() == 1);
}

TEST_CASE("a topic that neither exists nor can be created fails with a clear error", "[kafka]") {
    KafkaMockCluster cluster(1);
    cluster.set_topic_error("missing", 3);  // UNKNOWN_TOPIC_OR_PART
    asio::io_context io;
    auto config = config_for(cluster, "missing");
    config.properties = {{"topic.metadata.propagation.max.ms", "500"}};
    outbox::KafkaDestination kafka(io.get_executor(), config);
    auto outcomes = send_all(io, kafka, {text_message("nowhere to go")});
    CHECK(outcomes[0].ec == outbox::Errc::topic_not_found);
    CHECK(outcomes[0].receipt.diagnostics.message.find("\"missing\"") != std::string::npos);

    // Asked to create it, and refused (the mock has no CreateTopics): the error says so.
    config.partitions = 1;
    config.replication_factor = 1;
    outbox::KafkaDestination creating(io.get_executor(), config);
    auto refused = send_all(io, creating, {text_message("still nowhere")});
    INFO(refused[0].receipt.diagnostics.message);
    CHECK(refused[0].ec == outbox::Errc::topic_not_found);
    CHECK(refused[0].receipt.diagnostics.message.find("creating it failed: ") != std::string::npos);
}

TEST_CASE(
    "key_hash keeps a group in one partition, in order; CloudEvents binary mode fills "
    "ce_ headers",
    "[kafka]") {
    KafkaMockCluster cluster(3);
    cluster.create_topic("keyed", 4);
    asio::io_context io;
    auto config = config_for(cluster, "keyed");
    config.partitioner = outbox::KafkaPartitioner::key_hash;
    config.envelope = outbox::Envelope::cloudevents_binary;
    config.cloudevents.source = "/outbox/tests";
    config.cloudevents.type = "com.example.order.created";
    outbox::KafkaDestination kafka(io.get_executor(), config);
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 30; ++i) {
        outbox::Message m = text_message(R"({"n":)" + std::to_string(i) + "}");
        m.group_id = "customer-" + std::to_string(i % 3);
        messages.push_back(std::move(m));
    }
    for (auto& o : send_all(io, kafka, messages)) REQUIRE_FALSE(o.ec);
    CHECK_FALSE(close_destination(io, kafka));
    std::map<std::string, std::set<int>> partitions_of;
    std::map<std::string, std::vector<std::string>> order;
    for (const auto& r : kcat_read(cluster.bootstrap(), "keyed")) {
        REQUIRE(r.key.has_value());
        partitions_of[*r.key].insert(r.partition);
        order[*r.key].push_back(r.payload);
        std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
        CHECK(h["ce_specversion"] == "1.0");
        CHECK(h["ce_source"] == "/outbox/tests");
        CHECK(h["ce_type"] == "com.example.order.created");
        CHECK(h["ce_id"].size() == 36);
        CHECK(h["content-type"] == "application/json");
        CHECK_FALSE(h["ce_time"].empty());
    }
    REQUIRE(partitions_of.size() == 3);
    for (auto& [key, parts] : partitions_of) CHECK(parts.size() == 1);
    for (auto& [key, bodies] : order) {
        const int first = std::stoi(key.substr(key.find('-') + 1));
        for (std::size_t i = 0; i < bodies.size(); ++i)
            CHECK(bodies[i] == R"({"n":)" + std::to_string(first + 3 * static_cast<int>(i)) + "}");
    }
}

TEST_CASE(
    "a body over max_message_size: payload_too_large without a stager, staged in S3 "
    "with one",
    "[kafka]") {
    KafkaMockCluster cluster(1);
    cluster.create_topic("large", 1, 1);
    asio::io_context io;
    auto config = config_for(cluster, "large");
    config.max_message_size = 1000;
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        DeadLetters dead;
        dead.attach(kafka);
        auto outcomes = send_all(io, kafka, {text_message(std::string(1001, 'a'))});
        CHECK(outcomes[0].ec == outbox::Errc::payload_too_large);
        check_accounted(outcomes, {std::string(1001, 'a')}, kafka.stats(), dead);
    }
    outbox::PayloadStagerConfig stager_config;
    stager_config.bucket = "outbox-staging";
    stager_config.prefix = "kafka";
    stager_config.region = "us-east-1";
    stager_config.endpoint = outbox::test::s3rver().url();
    stager_config.credentials =
        outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"S3RVER", "S3RVER"});
    config.stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config);
    const std::string big(5000, 'b');
    {
        outbox::KafkaDestination kafka(io.get_executor(), config);
        auto outcomes = send_all(io, kafka, {text_message(big), text_message("small")});
        REQUIRE_FALSE(outcomes[0].ec);
        REQUIRE_FALSE(outcomes[1].ec);
        CHECK_FALSE(outcomes[0].receipt.staged_url.empty());
        CHECK(outcomes[1].receipt.staged_url.empty());
        CHECK(kafka.stats().staged == 1);
        CHECK_FALSE(close_destination(io, kafka));
    }
    config.stager->close();
    const auto records = kcat_read(cluster.bootstrap(), "large");
    REQUIRE(records.size() == 2);
    const auto& staged = records[0].payload.front() == '{' ? records[0] : records[1];
    simdjson::dom::parser parser;
    simdjson::dom::element envelope = parser.parse(staged.payload);
    CHECK(std::string_view(envelope["type"]) == "s3_payload");
    const std::string url{std::string_view(envelope["url"])};
    std::string fetched;
    REQUIRE(outbox::test::run_command({"curl", "-sf", url}, fetched) == 0);
    CHECK(fetched == big);

    // A staged message comes back to a waiting room that newer messages fill (librdkafka's
    // queue holds two): it takes its place among them, and each message arrives once.
    cluster.create_topic("staged-waits", 1, 1);
    {
        auto crowded = config_for(cluster, "staged-waits");
        crowded.max_message_size = 1000;
        crowded.max_in_flight_messages = 2;
        crowded.stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config);
        outbox::KafkaDestination kafka(io.get_executor(), crowded);
        std::vector<outbox::Message> messages{text_message(big)};
        std::vector<std::string> smalls;
        for (int i = 0; i < 40; ++i) {
            smalls.push_back("crowd " + std::to_string(i));
            messages.push_back(text_message(smalls.back()));
        }
        auto outcomes = send_all(io, kafka, messages);
        for (const auto& o : outcomes) REQUIRE_FALSE(o.ec);
        CHECK_FALSE(outcomes[0].receipt.staged_url.empty());
        CHECK(kafka.stats().waits_for_room > 0);
        CHECK_FALSE(close_destination(io, kafka));
        std::multiset<std::string> read;
        std::size_t envelopes = 0;
        for (const auto& r : kcat_read(cluster.bootstrap(), "staged-waits")) {
            if (r.payload.front() == '{')
                ++envelopes;
            else
                read.insert(r.payload);
        }
        CHECK(envelopes == 1);
        CHECK(read == std::multiset<std::string>(smalls.begin(), smalls.end()));
        crowded.stager->close();
    }

    // The Extended Client's pointer instead, its size in a header; read back by kcat.
    cluster.create_topic("pointers", 1, 1);
    auto pointers = config_for(cluster, "pointers");
    pointers.max_message_size = 1000;
    pointers.stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config);
    pointers.envelope = outbox::Envelope::extended_client;
    {
        outbox::KafkaDestination kafka(io.get_executor(), pointers);
        auto outcomes = send_all(io, kafka, {text_message(big), text_message("small")});
        REQUIRE_FALSE(outcomes[0].ec);
        REQUIRE_FALSE(outcomes[1].ec);
        CHECK_FALSE(close_destination(io, kafka));
    }
    pointers.stager->close();
    const auto pointed = kcat_read(cluster.bootstrap(), "pointers");
    REQUIRE(pointed.size() == 2);
    const auto& pointer = pointed[0].payload.front() == '[' ? pointed[0] : pointed[1];
    const auto& inline_record = pointed[0].payload.front() == '[' ? pointed[1] : pointed[0];
    CHECK(inline_record.payload == "small");
    CHECK(inline_record.headers.empty());
    REQUIRE(pointer.headers.size() == 1);
    CHECK(pointer.headers[0].first == "ExtendedPayloadSize");
    CHECK(pointer.headers[0].second == "5000");
    simdjson::dom::array parts = parser.parse(pointer.payload).get_array();
    REQUIRE(parts.size() == 2);
    CHECK(std::string_view(parts.at(0)) == "software.amazon.payloadoffloading.PayloadS3Pointer");
    CHECK(std::string_view(parts.at(1)["s3BucketName"]) == "outbox-staging");
    const std::string key{std::string_view(parts.at(1)["s3Key"])};
    CHECK(key.starts_with("kafka/"));
    // Resolved as a consumer with its own credentials would: a GET that botocore signs.
    std::string message = R"([{"body":)";
    outbox::append_json_string(message, pointer.payload);
    message += R"(,"attributes":{"ExtendedPayloadSize":{"type":"Number","value":)";
    outbox::append_json_string(message, pointer.headers[0].second);
    message += "}}}]";
    std::string resolved;
    REQUIRE(outbox::test::run_command(
                {"/usr/bin/python3", outbox::test::peers_dir() + "/extended_client_reader.py",
                 "--s3-endpoint", outbox::test::s3rver().url()},
                resolved, message) == 0);
    simdjson::dom::array read = parser.parse(resolved).get_array();
    REQUIRE(read.size() == 1);
    CHECK(std::string_view(read.at(0)["body"]) == big);
}

TEST_CASE("trace context travels as traceparent and tracestate headers, read back by kcat",
          "[kafka]") {
    KafkaMockCluster cluster(1);
    cluster.create_topic("traced", 1, 1);
    asio::io_context io;
    outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "traced"));
    const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    outbox::Message m = text_message("traced");
    m.attributes.push_back({"tenant", "String", "t1"});
    m.traceparent = traceparent;
    m.tracestate = "congo=t61rcWkgMzE";
    m.aws_trace_header = "Root=1-5759e988-bd862e3fe1be46a994272793";  // no place in Kafka
    outbox::Message bad = text_message("bad");
    bad.traceparent = "not a traceparent";
    auto outcomes = send_all(io, kafka, {std::move(m), std::move(bad)});
    REQUIRE_FALSE(outcomes[0].ec);
    CHECK(outcomes[1].ec == outbox::Errc::invalid_message);
    CHECK(outcomes[1].receipt.diagnostics.message.find("traceparent") != std::string::npos);
    CHECK_FALSE(close_destination(io, kafka));
    const auto records = kcat_read(cluster.bootstrap(), "traced");
    REQUIRE(records.size() == 1);
    const std::vector<std::pair<std::string, std::string>> expected{
        {"tenant", "t1"}, {"traceparent", traceparent}, {"tracestate", "congo=t61rcWkgMzE"}};
    CHECK(records[0].headers == expected);
}

TEST_CASE(
    "a dead-letter handler that throws is logged; its message still completes, and later "
    "failures still reach it",
    "[kafka]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    auto config = config_for(cluster, "throwing");
    config.max_message_size = 100;
    std::string logged;  // the I/O runs on this thread only
    config.logger = outbox::Logger{
        outbox::LogLevel::error,
        [&](outbox::LogLevel, std::string_view line) { logged.append(line).append("\n"); }};
    outbox::KafkaDestination kafka(io.get_executor(), config);
    std::vector<std::string> letters;
    kafka.set_dead_letter_handler([&](outbox::DeadLetter&& letter) {
        letters.push_back(letter.message.body);
        CHECK(letter.error == outbox::Errc::payload_too_large);
        CHECK(letter.target == "throwing");
        throw std::runtime_error("the parking table is full");
    });
    const std::string big(200, 'x');
    auto outcomes = send_all(
        io, kafka, {text_message(big + "1"), text_message("small"), text_message(big + "2")});
    CHECK(outcomes[0].ec == outbox::Errc::payload_too_large);
    CHECK_FALSE(outcomes[1].ec);
    CHECK(outcomes[2].ec == outbox::Errc::payload_too_large);
    CHECK(letters == std::vector<std::string>{big + "1", big + "2"});
    CHECK(logged.find("the dead-letter handler threw: the parking table is full") !=
          std::string::npos);
    CHECK_FALSE(close_destination(io, kafka));
}

TEST_CASE("a logger whose sink throws costs no message: each completes as it would without it",
          "[kafka]") {
    KafkaMockCluster cluster(3);
    asio::io_context io;
    auto config = config_for(cluster, "loud");
    config.partitions = 3;  // created first: "created topic" or "topic exists" is logged
    config.replication_factor = 1;
    config.max_message_size = 100;   // the failure of the big one is logged
    std::vector<std::string> lines;  // the I/O runs on this thread only
    config.logger =
        outbox::Logger{outbox::LogLevel::debug, [&](outbox::LogLevel, std::string_view line) {
                           lines.emplace_back(line);
                           throw std::runtime_error("the log file is full");
                       }};
    outbox::KafkaDestination kafka(io.get_executor(), config);
    std::vector<std::string> bodies;
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 20; ++i) {
        bodies.push_back(i == 7 ? std::string(200, 'x') : "loud-" + std::to_string(i));
        messages.push_back(text_message(bodies.back()));
    }
    const auto outcomes = send_all(io, kafka, messages);
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        INFO("message " << i);
        CHECK(outcomes[i].ec == (i == 7 ? outbox::Errc::payload_too_large : error_code{}));
    }
    CHECK_FALSE(close_destination(io, kafka));
    auto logged = [&](std::string_view what) {
        return std::any_of(lines.begin(), lines.end(),
                           [&](const std::string& l) { return l.find(what) != l.npos; });
    };
    CHECK(logged("topic \"loud\""));
    CHECK(logged(" failed: "));  // the big one, logged before it completes
    check_exactly_delivered(outcomes, bodies, kcat_read(cluster.bootstrap(), "loud"));
}

TEST_CASE("messages Kafka cannot carry fail at once; configuration that cannot work throws",
          "[kafka]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "refusals"));
    DeadLetters dead;
    dead.attach(kafka);
    outbox::Message delayed = text_message("later");
    delayed.delay = std::chrono::seconds(5);
    outbox::Message deduplicated = text_message("once");
    deduplicated.deduplication_id = "d-1";
    outbox::Message nameless = text_message("header");
    nameless.attributes.push_back({"", "String", "v"});
    auto outcomes = send_all(io, kafka, {delayed, deduplicated, nameless});
    for (auto& o : outcomes) {
        CHECK(o.ec == outbox::Errc::invalid_message);
        CHECK_FALSE(o.receipt.diagnostics.message.empty());
    }
    check_accounted(outcomes, {"later", "once", "header"}, kafka.stats(), dead);

    auto bad = [&](auto change) {
        auto c = config_for(cluster, "refusals");
        change(c);
        CHECK_THROWS_AS(outbox::KafkaDestination(io.get_executor(), c), std::invalid_argument);
    };
    bad([](auto& c) { c.bootstrap_servers.clear(); });
    bad([](auto& c) { c.topic = "has space"; });
    bad([](auto& c) { c.security = outbox::KafkaSecurity::sasl_ssl; });  // no user name
    bad([](auto& c) { c.compression = "brotli"; });
    bad([](auto& c) { c.partitions = 3; });  // without a replication factor
    bad([](auto& c) { c.acks = "1"; });      // idempotence needs acks=all
    bad([](auto& c) { c.properties = {{"no.such.property", "1"}}; });
    try {
        auto c = config_for(cluster, "refusals");
        c.properties = {{"sasl.password", "hunter2-secret"}, {"ssl.key.password.nope", "x"}};
        outbox::KafkaDestination d(io.get_executor(), c);
        FAIL("accepted an unknown property");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    }
}

TEST_CASE("send_blocking works with KafkaDestination from a thread without an event loop",
          "[kafka]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    {
        outbox::KafkaDestination kafka(io.get_executor(), config_for(cluster, "blocking"));
        error_code ec;
        auto receipt = outbox::send_blocking(kafka, text_message("blocking hello"), ec);
        CHECK_FALSE(ec);
        CHECK(receipt.offset == 0);
        CHECK_FALSE(outbox::close_blocking(kafka, std::chrono::seconds(5)));
    }
    guard.reset();
    runner.join();
    const auto records = kcat_read(cluster.bootstrap(), "blocking");
    REQUIRE(records.size() == 1);
    CHECK(records[0].payload == "blocking hello");
}
