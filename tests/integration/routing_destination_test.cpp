// RoutingDestination in front of real peers: tenants routed to their own SQS queues (fauxqs,
// read back with the AWS SDK for JavaScript) and Kafka topics (the mock cluster, read back
// with kcat), each target's destination made once and kept.
#include "catch.hpp"
#include "destination_runs.hpp"
#include "kafka_mock.hpp"
#include "local_peers.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/kafka_destination.hpp>
#include <outbox/routing_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <stdexcept>

namespace asio = boost::asio;
using outbox::test::check_accounted;
using outbox::test::close_destination;
using outbox::test::DeadLetters;
using outbox::test::KafkaMockCluster;
using outbox::test::send_all;

namespace {

outbox::Message tenant_message(const std::string& tenant, const std::string& body) {
    outbox::Message m;
    m.body = body;
    m.attributes.push_back({"tenant", "String", tenant});
    return m;
}

std::string tenant_of(const outbox::Message& m) {
    for (auto& a : m.attributes)
        if (a.name == "tenant") return a.value;
    return {};
}

// Targets are "sqs:QUEUE_URL" or "kafka:TOPIC"; the factory counts what it makes.
struct Routes {
    asio::io_context& io;
    const KafkaMockCluster& cluster;
    std::map<std::string, std::string> tenants;  // tenant -> target
    std::atomic<int> made{0};

    outbox::RoutingDestinationConfig config() {
        outbox::RoutingDestinationConfig c;
        c.route = [this](const outbox::Message& m) -> std::string {
            const std::string tenant = tenant_of(m);
            if (tenant == "explode") throw std::runtime_error("tenant table unavailable");
            auto it = tenants.find(tenant);
            return it == tenants.end() ? std::string() : it->second;
        };
        c.make_destination =
            [this](const std::string& target) -> std::unique_ptr<outbox::Destination> {
            ++made;
            if (target.starts_with("sqs:")) {
                outbox::SqsDestinationConfig sqs;
                sqs.queue_url = target.substr(4);
                sqs.endpoint = outbox::test::fauxqs().url();
                sqs.region = "us-east-1";
                sqs.credentials = outbox::make_static_credentials(
                    io.get_executor(), outbox::Credentials{"AKIDROUTING", "routing-secret"});
                return std::make_unique<outbox::SqsDestination>(io.get_executor(), sqs);
            }
            if (target.starts_with("kafka:")) {
                outbox::KafkaDestinationConfig kafka;
                kafka.bootstrap_servers = cluster.bootstrap();
                kafka.topic = target.substr(6);
                kafka.security = outbox::KafkaSecurity::plaintext;
                return std::make_unique<outbox::KafkaDestination>(io.get_executor(), kafka);
            }
            throw std::invalid_argument("unknown kind of target");
        };
        return c;
    }
};

}  // namespace

TEST_CASE(
    "messages reach the target their tenant routes to; each target's destination is "
    "made once",
    "[routing]") {
    KafkaMockCluster cluster(1);
    cluster.create_topic("tenant-c", 2, 1);
    asio::io_context io;
    const std::string queue_a = outbox::test::create_queue("routing-tenant-a");
    const std::string queue_b = outbox::test::create_queue("routing-tenant-b");
    Routes routes{
        io, cluster, {{"a", "sqs:" + queue_a}, {"b", "sqs:" + queue_b}, {"c", "kafka:tenant-c"}}};
    outbox::RoutingDestination router(io.get_executor(), routes.config());
    DeadLetters dead;
    dead.attach(router);

    std::vector<outbox::Message> messages;
    std::vector<std::string> bodies;
    for (int i = 0; i < 30; ++i) {
        const std::string tenant(1, "abc"[i % 3]);
        bodies.push_back(tenant + "-event-" + std::to_string(i));
        messages.push_back(tenant_message(tenant, bodies.back()));
    }
    auto outcomes = send_all(io, router, messages);
    for (auto& o : outcomes) REQUIRE_FALSE(o.ec);
    CHECK(routes.made == 3);
    CHECK(router.target_count() == 3);
    check_accounted(outcomes, bodies, router.stats(), dead);
    for (auto& [target, stats] : router.stats_by_target()) {
        INFO(target);
        CHECK(stats.delivered == 10);
    }
    CHECK_FALSE(close_destination(io, router));

    auto a = outbox::test::receive_bodies(queue_a, 10, 10);
    auto b = outbox::test::receive_bodies(queue_b, 10, 10);
    auto c = outbox::test::kcat_read(cluster.bootstrap(), "tenant-c");
    REQUIRE(a.size() == 10);
    REQUIRE(b.size() == 10);
    REQUIRE(c.size() == 10);
    for (auto& body : a) CHECK(body.starts_with("a-event-"));
    for (auto& body : b) CHECK(body.starts_with("b-event-"));
    for (auto& record : c) {
        CHECK(record.payload.starts_with("c-event-"));
        CHECK(std::find(record.headers.begin(), record.headers.end(),
                        std::pair<std::string, std::string>("tenant", "c")) !=
              record.headers.end());
    }
}

TEST_CASE(
    "a message with no route, a target no destination can be made for, or one past "
    "max_destinations fails alone with no_route and goes to the dead letters",
    "[routing]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    const std::string queue = outbox::test::create_queue("routing-fine");
    Routes routes{io,
                  cluster,
                  {{"fine", "sqs:" + queue},
                   {"broken", "sqs:not a url"},
                   {"strange", "carrier-pigeon:loft"},
                   {"second", "kafka:second"}}};
    auto config = routes.config();
    config.max_destinations = 1;
    outbox::RoutingDestination router(io.get_executor(), config);
    DeadLetters dead;
    dead.attach(router);

    // The factory's refusals come first: they make nothing, so they do not count against
    // max_destinations; "second" then finds the one place taken by "fine".
    const std::vector<std::string> tenants{"broken", "strange", "nowhere", "explode",
                                           "fine",   "second",  "fine"};
    std::vector<std::string> bodies;
    std::vector<outbox::Message> messages;
    for (std::size_t i = 0; i < tenants.size(); ++i) {
        bodies.push_back("to " + tenants[i] + " " + std::to_string(i));
        messages.push_back(tenant_message(tenants[i], bodies.back()));
    }
    auto outcomes = send_all(io, router, messages);
    CHECK_FALSE(outcomes[4].ec);
    CHECK_FALSE(outcomes[6].ec);
    for (int i : {0, 1, 2, 3, 5}) {
        INFO(bodies[i] << ": " << outcomes[i].receipt.diagnostics.message);
        CHECK(outcomes[i].ec == outbox::Errc::no_route);
        CHECK_FALSE(outbox::is_retryable(outcomes[i].ec));
    }
    auto says = [&](int i, const std::string& text) {
        INFO(outcomes[i].receipt.diagnostics.message);
        return outcomes[i].receipt.diagnostics.message.find(text) != std::string::npos;
    };
    CHECK(
        says(0, "no destination for \"sqs:not a url\""));  // the target, then the factory's reason
    CHECK(says(0, "queue"));
    CHECK(says(1, "unknown kind of target"));
    CHECK(says(2, "named no target"));
    CHECK(says(3, "tenant table unavailable"));
    CHECK(says(5, "max_destinations"));
    CHECK(router.target_count() == 1);
    check_accounted(outcomes, bodies, router.stats(), dead);
    {
        std::lock_guard lock(dead.mutex);
        for (auto& letter : dead.letters)
            if (letter.message.body == bodies[0]) CHECK(letter.target == "sqs:not a url");
    }
    CHECK_FALSE(close_destination(io, router));
    auto late = send_all(io, router, {tenant_message("fine", "after close")});
    CHECK(late[0].ec == asio::error::operation_aborted);
    CHECK(outbox::test::receive_bodies(queue, 3, 5).size() == 2);
}

TEST_CASE("a target's own failures reach the router's dead letters, naming the target",
          "[routing]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    Routes routes{io, cluster, {{"big", "kafka:big"}}};
    auto config = routes.config();
    config.make_destination =
        [&](const std::string& target) -> std::unique_ptr<outbox::Destination> {
        outbox::KafkaDestinationConfig kafka;
        kafka.bootstrap_servers = cluster.bootstrap();
        kafka.topic = target.substr(6);
        kafka.security = outbox::KafkaSecurity::plaintext;
        kafka.max_message_size = 100;
        return std::make_unique<outbox::KafkaDestination>(io.get_executor(), kafka);
    };
    outbox::RoutingDestination router(io.get_executor(), config);
    DeadLetters dead;
    dead.attach(router);
    const std::vector<std::string> bodies{std::string(200, 'x'), "small"};
    auto outcomes =
        send_all(io, router, {tenant_message("big", bodies[0]), tenant_message("big", bodies[1])});
    CHECK(outcomes[0].ec == outbox::Errc::payload_too_large);
    CHECK_FALSE(outcomes[1].ec);
    check_accounted(outcomes, bodies, router.stats(), dead);
    std::lock_guard lock(dead.mutex);
    REQUIRE(dead.letters.size() == 1);
    CHECK(dead.letters[0].target == "big");  // the Kafka destination names its topic
    CHECK(dead.letters[0].message.attributes.size() == 1);
}

TEST_CASE("without a route function, Message::target routes, and it never reaches the queue",
          "[routing]") {
    KafkaMockCluster cluster(1);
    asio::io_context io;
    const std::string queue = outbox::test::create_queue("routing-by-target");
    Routes routes{io, cluster, {}};
    auto config = routes.config();
    config.route = nullptr;  // Message::target decides
    outbox::RoutingDestination router(io.get_executor(), config);
    outbox::Message routed;
    routed.body = "routed by its target";
    routed.target = "sqs:" + queue;
    outbox::Message lost;
    lost.body = "no target";
    auto outcomes = send_all(io, router, {std::move(routed), std::move(lost)});
    CHECK_FALSE(outcomes[0].ec);
    CHECK(outcomes[1].ec == outbox::Errc::no_route);
    CHECK(outcomes[1].receipt.diagnostics.message ==
          "routing: the message has no target (Message::target)");
    // What the customer's queue holds: the body, and no attribute naming the target.
    const std::string json = outbox::test::receive_json(queue, 1);
    CHECK(json.find("routed by its target") != std::string::npos);
    CHECK(json.find("\"attributes\":{}") != std::string::npos);
    CHECK(json.find("sqs:") == std::string::npos);
    CHECK(close_destination(io, router) == boost::system::error_code{});
}
