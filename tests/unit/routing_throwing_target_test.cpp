// A RoutingDestination whose target's destination (an application's) throws from async_send:
// the exception reaches the caller, and the message gives back its place in flight, so the
// target's next messages go. Without a network: the destination answers by posting.
#include "catch.hpp"
#include "function_destination.hpp"

#include <outbox/routing_destination.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using outbox::test::FunctionDestination;

namespace {

outbox::Message to(std::string target, std::string body) {
    outbox::Message m;
    m.target = std::move(target);
    m.body = std::move(body);
    return m;
}

}  // namespace

TEST_CASE(
    "a target whose destination throws: the caller sees it, and the target's place in "
    "flight is given back") {
    asio::io_context io;
    outbox::RoutingDestinationConfig config;
    config.max_in_flight_per_target = 1;  // one place: a leaked one would refuse every later send
    // Throws for its first three sends, then delivers each message (its body as the id).
    int throws = 3;
    config.make_destination = [&](const std::string&) {
        return std::make_unique<FunctionDestination>(
            io.get_executor(), [&throws](const outbox::Message& m) {
                if (throws-- > 0)
                    throw std::runtime_error("the application's destination is not ready");
                FunctionDestination::Outcome o;
                o.receipt.message_id = m.body;
                return o;
            });
    };
    outbox::RoutingDestination router(io.get_executor(), config);

    int handlers_called = 0;
    for (int i = 0; i < 3; ++i)
        CHECK_THROWS_WITH(
            router.async_send(to("tenant", "lost " + std::to_string(i)),
                              [&](error_code, outbox::Receipt) { ++handlers_called; }),
            "the application's destination is not ready");

    std::optional<error_code> result;
    outbox::Receipt receipt;
    router.async_send(to("tenant", "after"), [&](error_code ec, outbox::Receipt r) {
        result = ec;
        receipt = std::move(r);
    });
    io.run();
    REQUIRE(result);
    CHECK_FALSE(*result);  // not target_busy: the three that threw hold no place
    CHECK(receipt.message_id == "after");
    CHECK(handlers_called == 0);
    CHECK(router.target_status().at(0).in_flight == 0);
}

TEST_CASE("an open breaker's probe whose send throws gives the probe's turn back") {
    asio::io_context io;
    outbox::RoutingDestinationConfig config;
    config.breaker.failures_to_open = 1;
    config.breaker.open_for = std::chrono::milliseconds(20);
    // By body: "fail" fails as a broken target would, "throw" throws, the rest is delivered.
    config.make_destination = [&io](const std::string&) {
        return std::make_unique<FunctionDestination>(
            io.get_executor(), [](const outbox::Message& m) {
                if (m.body == "throw") throw std::runtime_error("the connector broke");
                FunctionDestination::Outcome o;
                if (m.body == "fail") o.ec = outbox::Errc::service_unavailable;
                return o;
            });
    };
    outbox::RoutingDestination router(io.get_executor(), config);
    auto send = [&](std::string body) {
        std::optional<error_code> result;
        router.async_send(to("tenant", std::move(body)),
                          [&](error_code ec, outbox::Receipt) { result = ec; });
        io.restart();
        while (!result && io.run_one() != 0) {
        }
        REQUIRE(result);
        return *result;
    };
    CHECK(send("fail") == outbox::Errc::service_unavailable);
    REQUIRE(router.target_status().at(0).health == outbox::TargetHealth::open);
    // Past open_for, the next message is the probe.
    asio::steady_timer past_open_for(io, std::chrono::milliseconds(40));
    io.restart();
    past_open_for.wait();
    CHECK_THROWS_WITH(send("throw"), "the connector broke");
    // The probe's turn came back: the next message goes as the probe and closes the breaker,
    // where it would have been refused (target_unavailable) for good.
    CHECK_FALSE(send("delivered"));
    CHECK(router.target_status().at(0).health == outbox::TargetHealth::healthy);
}
