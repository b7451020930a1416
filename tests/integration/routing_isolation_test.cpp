// Many customers in one process: a RoutingDestination in front of hundreds of queues on the
// local SQS server (fauxqs, read back with the AWS SDK for JavaScript) and tens of broken
// ones — a server answering 503 and a port that refuses connections. Each target's circuit
// breaker opens, the broken servers see a bounded number of requests, the healthy queues get
// everything, and each target's health events arrive in order.
#include "catch.hpp"
#include "destination_runs.hpp"
#include "fake_sqs.hpp"
#include "local_peers.hpp"
#include "peer_process.hpp"
#include "test_http_server.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/prometheus_text.hpp>
#include <outbox/routing_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <simdjson.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using outbox::Errc;
using outbox::TargetHealth;
using outbox::test::Outcome;
using outbox::test::send_all;
using outbox::test::TestHttpServer;
using outbox::test::TestReply;
using outbox::test::TestRequest;

namespace {

std::string origin_of(const std::string& url) {  // "http://127.0.0.1:PORT"
    return url.substr(0, url.find('/', url.find("//") + 2));
}

// Every target is an SQS queue URL; its destination gives up on a message after three quick
// attempts, so a broken target's failures come in milliseconds.
outbox::RoutingDestinationConfig routes(asio::io_context& io) {
    outbox::RoutingDestinationConfig c;
    c.make_destination = [&io](const std::string& queue_url) {
        outbox::SqsDestinationConfig sqs;
        sqs.queue_url = queue_url;
        // fauxqs names its queues under a host that does not resolve: its own address then.
        sqs.endpoint = queue_url.starts_with("http://127.0.0.1:") ? origin_of(queue_url)
                                                                  : outbox::test::fauxqs().url();
        sqs.region = "us-east-1";
        sqs.linger = 0ms;
        sqs.max_message_size = 262144;  // no lookup first: every request is a send
        sqs.retry.max_attempts = 3;
        sqs.retry.base_delay = 5ms;
        sqs.retry.max_delay = 20ms;
        sqs.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{"AKIDISOLATION", "isolation-secret"});
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), sqs);
    };
    return c;
}

outbox::Message to(const std::string& target, std::string body) {
    outbox::Message m;
    m.target = target;
    m.body = std::move(body);
    return m;
}

// The health events of each target, in the order the handler saw them.
struct HealthLog {
    std::mutex mutex;
    std::map<std::string, std::vector<outbox::TargetHealthEvent>> by_target;
    std::vector<std::string> order;  // "target health", as they came
    outbox::TargetHealthHandler handler() {
        return [this](const outbox::TargetHealthEvent& e) {
            std::lock_guard lock(mutex);
            by_target[e.target].push_back(e);
            order.push_back(e.target + " " + outbox::to_string(e.health));
        };
    }
    std::vector<TargetHealth> of(const std::string& target) {
        std::lock_guard lock(mutex);
        std::vector<TargetHealth> out;
        for (auto& e : by_target[target]) out.push_back(e.health);
        return out;
    }
};

// A port on 127.0.0.1 where nothing listens (bound, then closed).
std::uint16_t refusing_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = a.local_endpoint().port();
    a.close();
    return port;
}

}  // namespace

TEST_CASE(
    "hundreds of healthy targets and tens of broken ones: the broken ones' breakers open, "
    "their servers see few requests, the healthy queues get every message",
    "[routing][isolation]") {
    constexpr std::size_t healthy_count = 200, broken_each = 10, waves = 10;
    const std::string run = std::to_string(::getpid());
    const std::vector<std::string> healthy =
        outbox::test::create_queues("isolation-" + run, healthy_count);
    TestHttpServer down(outbox::test::sqs_unavailable);
    const std::uint16_t refused_port = refusing_port();
    std::vector<std::string> answering_503, refusing;
    for (std::size_t i = 0; i < broken_each; ++i) {
        answering_503.push_back(down.url("/000000000000/down-" + std::to_string(i)));
        refusing.push_back("http://127.0.0.1:" + std::to_string(refused_port) +
                           "/000000000000/refused-" + std::to_string(i));
    }
    std::vector<std::string> targets = healthy;
    targets.insert(targets.end(), answering_503.begin(), answering_503.end());
    targets.insert(targets.end(), refusing.begin(), refusing.end());

    asio::io_context io;
    HealthLog health;
    auto config = routes(io);
    config.breaker.failures_to_open = 3;
    config.breaker.open_for = std::chrono::hours(1);  // no probe within the test
    config.breaker.max_open_for = std::chrono::hours(1);
    config.on_health = health.handler();
    outbox::RoutingDestination router(io.get_executor(), config);
    outbox::test::DeadLetters dead;
    dead.attach(router);

    // Waves of one message per target, each wave complete before the next.
    std::map<std::string, std::vector<Outcome>> outcomes;
    std::vector<std::string> bodies;
    std::vector<Outcome> all;
    for (std::size_t wave = 0; wave < waves; ++wave) {
        std::vector<outbox::Message> messages;
        for (const auto& t : targets) {
            bodies.push_back(t.substr(t.rfind('/') + 1) + " wave " + std::to_string(wave));
            messages.push_back(to(t, bodies.back()));
        }
        const auto done = send_all(io, router, std::move(messages));
        for (std::size_t i = 0; i < targets.size(); ++i) outcomes[targets[i]].push_back(done[i]);
        all.insert(all.end(), done.begin(), done.end());
    }
    io.restart();
    io.poll();  // the last health events
    outbox::test::check_accounted(all, bodies, router.stats(), dead);

    // Every healthy message delivered, and read back by an independent client.
    for (const auto& t : healthy)
        for (const auto& o : outcomes[t]) REQUIRE_FALSE(o.ec);
    simdjson::dom::parser parser;
    const std::string received = outbox::test::receive_many_json(healthy, waves, 120);
    std::size_t arrived = 0;
    for (auto [queue, got] : parser.parse(received).get_object()) {
        std::set<std::string> distinct;
        for (std::string_view b : got.get_array()) distinct.insert(std::string(b));
        CHECK(distinct.size() == waves);
        arrived += distinct.size();
    }
    CHECK(arrived == healthy_count * waves);

    // Each broken target: three messages tried and failed, then refused without a request.
    std::uint64_t attempts_at_503 = 0;
    for (const auto& t : answering_503) {
        for (std::size_t wave = 0; wave < waves; ++wave) {
            const Outcome& o = outcomes[t][wave];
            if (wave < 3) {
                CHECK(o.ec == Errc::service_unavailable);
                CHECK(o.receipt.attempts == 3);
                attempts_at_503 += o.receipt.attempts;
            } else {
                CHECK(o.ec == Errc::target_unavailable);
                CHECK(o.receipt.attempts == 0);
                CHECK(o.receipt.diagnostics.message.find("down for maintenance") !=
                      std::string::npos);
            }
        }
        CHECK(health.of(t) ==
              std::vector<TargetHealth>{TargetHealth::degraded, TargetHealth::open});
    }
    // The 503 server saw exactly the attempts of the failed messages: 90, where without the
    // breakers it would have seen 300.
    CHECK(down.requests() == attempts_at_503);
    CHECK(attempts_at_503 == broken_each * 3 * 3);
    for (const auto& t : refusing) {
        for (std::size_t wave = 3; wave < waves; ++wave)
            CHECK(outcomes[t][wave].ec == Errc::target_unavailable);
        CHECK(health.of(t) ==
              std::vector<TargetHealth>{TargetHealth::degraded, TargetHealth::open});
        const auto events = [&] {
            std::lock_guard lock(health.mutex);
            return health.by_target[t];
        }();
        REQUIRE(events.size() == 2);
        CHECK(events[1].consecutive_failures == 3);
        CHECK(events[1].last_error == asio::error::connection_refused);
    }
    for (const auto& t : healthy) CHECK(health.of(t).empty());

    std::size_t open = 0, healthy_status = 0;
    for (const auto& s : router.target_status()) {
        CHECK(s.in_flight == 0);
        if (s.health == TargetHealth::open) ++open;
        if (s.health == TargetHealth::healthy && s.consecutive_failures == 0) ++healthy_status;
    }
    CHECK(open == 2 * broken_each);
    CHECK(healthy_status == healthy_count);

    // The same as Prometheus reads it: 25 targets named, the 20 broken ones first, the rest
    // summed as (other).
    outbox::PrometheusText metrics;
    outbox::add_routing_metrics(metrics, {{"router", "customers"}}, router, 25);
    const std::string page = metrics.text();
    std::string promtool_out;
    CHECK(outbox::test::run_command({"/bin/sh", "-c", "promtool check metrics 2>&1"}, promtool_out,
                                    page) == 0);
    INFO(promtool_out);
    CHECK(page.find("outbox_target_health{router=\"customers\",target=\"" + answering_503[0] +
                    "\",health=\"open\"} 1\n") != std::string::npos);
    CHECK(page.find("outbox_target_failures{router=\"customers\",target=\"" + refusing[9] +
                    "\"} 3\n") != std::string::npos);
    CHECK(page.find("outbox_messages_delivered_total{router=\"customers\",target=\"" + healthy[0] +
                    "\"} " + std::to_string(waves) + "\n") != std::string::npos);
    CHECK(page.find("outbox_messages_delivered_total{router=\"customers\",target=\"(other)\"} " +
                    std::to_string((healthy_count - 5) * waves) + "\n") != std::string::npos);
    CHECK_FALSE(outbox::test::close_destination(io, router));
}

TEST_CASE("an open breaker lets one probe through; when the target answers again, it closes",
          "[routing][isolation]") {
    std::atomic<bool> up{false};
    TestHttpServer flaky([&](const TestRequest& r) {
        return up ? outbox::test::sqs_accept_all(r) : outbox::test::sqs_unavailable(r);
    });
    const std::string target = flaky.url("/000000000000/flaky");
    asio::io_context io;
    HealthLog health;
    auto config = routes(io);
    config.breaker.failures_to_open = 3;
    config.breaker.open_for = 0ms;  // a probe as soon as a message comes
    config.breaker.max_open_for = 0ms;
    config.on_health = health.handler();
    outbox::RoutingDestination router(io.get_executor(), config);

    for (int i = 0; i < 3; ++i)
        REQUIRE(send_all(io, router, {to(target, "down " + std::to_string(i))})[0].ec ==
                Errc::service_unavailable);
    CHECK(flaky.requests() == 9);
    // Open: of three messages at once, the first is the probe (tried three times), the other
    // two are refused while it is out.
    auto wave = send_all(io, router, {to(target, "probe"), to(target, "b"), to(target, "c")});
    CHECK(wave[0].ec == Errc::service_unavailable);
    CHECK(wave[0].receipt.attempts == 3);
    CHECK(wave[1].ec == Errc::target_unavailable);
    CHECK(wave[2].ec == Errc::target_unavailable);
    CHECK(flaky.requests() == 12);
    up = true;
    auto back = send_all(io, router, {to(target, "back")});
    CHECK_FALSE(back[0].ec);
    auto after = send_all(io, router, {to(target, "x"), to(target, "y")});
    CHECK_FALSE(after[0].ec);
    CHECK_FALSE(after[1].ec);
    io.restart();
    io.poll();
    CHECK(health.of(target) == std::vector<TargetHealth>{TargetHealth::degraded, TargetHealth::open,
                                                         TargetHealth::healthy});
    CHECK_FALSE(outbox::test::close_destination(io, router));
}

TEST_CASE("a target holding max_in_flight_per_target refuses more at once; others go on",
          "[routing][isolation]") {
    TestHttpServer hanging([](const TestRequest&) {
        TestReply r;
        r.action = TestReply::Action::hold;
        return r;
    });
    const std::string stuck = hanging.url("/000000000000/stuck");
    const std::string queue = outbox::test::create_queue("isolation-busy-neighbour");
    asio::io_context io;
    auto config = routes(io);
    config.max_in_flight_per_target = 4;
    outbox::RoutingDestination router(io.get_executor(), config);

    std::vector<Outcome> stuck_outcomes(6);
    int completed = 0;
    for (int i = 0; i < 6; ++i)
        router.async_send(to(stuck, "stuck " + std::to_string(i)),
                          [&, i](boost::system::error_code ec, outbox::Receipt r) {
                              stuck_outcomes[i].ec = ec;
                              stuck_outcomes[i].receipt = std::move(r);
                              ++completed;
                          });
    // The two beyond the bound fail at once; the four held do not hold up the neighbour.
    auto neighbour = send_all(io, router, {to(queue, "n1"), to(queue, "n2")});
    CHECK_FALSE(neighbour[0].ec);
    CHECK_FALSE(neighbour[1].ec);
    CHECK(completed == 2);
    CHECK(stuck_outcomes[4].ec == Errc::target_busy);
    CHECK(stuck_outcomes[5].ec == Errc::target_busy);
    CHECK(stuck_outcomes[4].receipt.diagnostics.message.find("max_in_flight_per_target") !=
          std::string::npos);
    // Closing fails the four held ones; each is accounted for.
    outbox::test::close_destination(io, router, 100ms);
    io.restart();
    io.poll();
    CHECK(completed == 6);
    for (int i = 0; i < 4; ++i) CHECK(stuck_outcomes[i].ec);
    CHECK(outbox::test::receive_bodies(queue, 2, 10).size() == 2);
}

TEST_CASE("idle targets are forgotten and made again by their next message; nothing is lost",
          "[routing][isolation]") {
    constexpr std::size_t count = 50;
    const std::string run = std::to_string(::getpid());
    const std::vector<std::string> queues = outbox::test::create_queues("idle-" + run, count);
    const std::string trigger = outbox::test::create_queue("idle-trigger-" + run);
    asio::io_context io;
    auto config = routes(io);
    std::atomic<int> made{0};
    auto make = config.make_destination;
    config.make_destination = [&, make](const std::string& target) {
        ++made;
        return make(target);
    };
    config.idle_timeout = 300ms;  // far above the time a wave takes, even under a sanitizer
    outbox::RoutingDestination router(io.get_executor(), config);

    auto wave = [&](const std::string& label) {
        std::vector<outbox::Message> messages;
        for (const auto& q : queues) messages.push_back(to(q, label));
        for (const auto& o : send_all(io, router, std::move(messages))) REQUIRE_FALSE(o.ec);
    };
    wave("first");
    CHECK(router.target_count() == count);
    // The policy under test is time itself: let the targets be idle for twice the timeout.
    asio::steady_timer idle(io, 600ms);
    idle.wait();
    // The next message (to another target) looks for idle targets: all 50 go.
    REQUIRE_FALSE(send_all(io, router, {to(trigger, "trigger")})[0].ec);
    CHECK(router.evicted_count() == count);
    CHECK(router.target_count() == 1);
    CHECK(router.stats().delivered == count + 1);  // the forgotten targets' figures stay
    wave("second");
    CHECK(made == 2 * count + 1);
    CHECK(router.target_count() == count + 1);
    CHECK(router.stats().delivered == 2 * count + 1);
    io.restart();
    io.poll();  // the forgotten destinations' closes
    const std::string received = outbox::test::receive_many_json(queues, 2, 60);
    simdjson::dom::parser parser;
    std::size_t arrived = 0;
    for (auto [queue, got] : parser.parse(received).get_object()) {
        std::set<std::string> bodies;
        for (std::string_view b : got.get_array()) bodies.insert(std::string(b));
        CHECK(bodies == std::set<std::string>{"first", "second"});
        arrived += bodies.size();
    }
    CHECK(arrived == 2 * count);
    CHECK_FALSE(outbox::test::close_destination(io, router));
}

TEST_CASE("destroying the router destroys its targets: what they hold completes at once",
          "[routing][isolation]") {
    TestHttpServer hanging([](const TestRequest&) {
        TestReply r;
        r.action = TestReply::Action::hold;
        return r;
    });
    asio::io_context io;
    std::vector<boost::system::error_code> results;
    {
        outbox::RoutingDestination router(io.get_executor(), routes(io));
        for (int i = 0; i < 3; ++i)
            router.async_send(
                to(hanging.url("/000000000000/held"), "held " + std::to_string(i)),
                [&](boost::system::error_code ec, outbox::Receipt) { results.push_back(ec); });
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (hanging.requests() == 0 && std::chrono::steady_clock::now() < until)
            io.run_one_for(100ms);
        REQUIRE(hanging.requests() >= 1);  // in a request that never ends
    }
    io.restart();
    io.run();  // returns: nothing of the router is left waiting
    REQUIRE(results.size() == 3);
    // Aborted; outcome_unknown for those whose request had gone out.
    for (const auto& ec : results)
        CHECK((ec == asio::error::operation_aborted || ec == Errc::outcome_unknown));
}

TEST_CASE("a rate limit per target: its burst goes, the rest is refused at once; others go on",
          "[routing][isolation]") {
    const std::string limited = outbox::test::create_queue("isolation-rate-limited");
    const std::string other = outbox::test::create_queue("isolation-rate-other");
    asio::io_context io;
    auto config = routes(io);
    config.rate_limit_per_target = {.per_second = 0.5, .burst = 2};
    outbox::RoutingDestination router(io.get_executor(), config);
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 5; ++i) messages.push_back(to(limited, "limited " + std::to_string(i)));
    messages.push_back(to(other, "other 0"));
    messages.push_back(to(other, "other 1"));
    const auto done = send_all(io, router, std::move(messages));
    CHECK_FALSE(done[0].ec);
    CHECK_FALSE(done[1].ec);
    for (int i = 2; i < 5; ++i) {
        CHECK(done[i].ec == Errc::target_busy);
        CHECK(done[i].receipt.diagnostics.message.find("rate limit") != std::string::npos);
    }
    CHECK_FALSE(done[5].ec);
    CHECK_FALSE(done[6].ec);
    CHECK(outbox::test::receive_bodies(limited, 2, 10).size() == 2);
    CHECK_FALSE(outbox::test::close_destination(io, router));
}
