// async_send_all over a destination whose async_send throws for some messages (an
// application's Destination): each such message fails with its own outcome, the others are
// sent, and the operation completes. Without a network: the destination answers by posting.
#include "catch.hpp"
#include "function_destination.hpp"

#include <outbox/send_all.hpp>

#include <boost/asio/io_context.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using outbox::test::FunctionDestination;

namespace {

// Throws for a body starting with "throw", else delivers it (its body as the message id);
// `sent` collects what was delivered.
FunctionDestination throws_on_some(asio::io_context& io, std::vector<std::string>& sent) {
    return FunctionDestination(io.get_executor(), [&sent](const outbox::Message& m) {
        if (m.body.starts_with("throw")) throw std::runtime_error("no route to " + m.body);
        sent.push_back(m.body);
        FunctionDestination::Outcome o;
        o.receipt.message_id = m.body;
        return o;
    });
}

std::vector<outbox::Message> messages_of(const std::vector<std::string>& bodies) {
    std::vector<outbox::Message> messages;
    for (const auto& b : bodies) {
        outbox::Message m;
        m.body = b;
        messages.push_back(std::move(m));
    }
    return messages;
}

}  // namespace

TEST_CASE("async_send_all: a message whose send throws fails on its own, and the rest go on") {
    asio::io_context io;
    std::vector<std::string> sent;
    auto d = throws_on_some(io, sent);
    // Two in flight: "throw-1" is among the first handed over, "throw-3" and "throw-4" are
    // handed over from completions (the second right after the first throws).
    const std::vector<std::string> bodies = {"a", "throw-1", "b", "throw-3", "throw-4", "c"};
    std::optional<std::vector<outbox::SendOutcome>> outcomes;
    outbox::async_send_all(d, messages_of(bodies), 2,
                           [&](std::vector<outbox::SendOutcome> o) { outcomes = std::move(o); });
    REQUIRE_NOTHROW(io.run());

    REQUIRE(outcomes);
    REQUIRE(outcomes->size() == bodies.size());
    CHECK(sent == std::vector<std::string>{"a", "b", "c"});
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        const auto& o = (*outcomes)[i];
        INFO(bodies[i]);
        if (bodies[i].starts_with("throw")) {
            CHECK(o.error == outbox::Errc::target_unavailable);
            CHECK(o.receipt.diagnostics.message ==
                  "the destination threw: no route to " + bodies[i]);
        } else {
            CHECK_FALSE(o.error);
            CHECK(o.receipt.message_id == bodies[i]);
        }
    }
}

TEST_CASE("async_send_all: when every send throws, it still completes, with every outcome") {
    asio::io_context io;
    std::vector<std::string> sent;
    auto d = throws_on_some(io, sent);
    std::optional<std::vector<outbox::SendOutcome>> outcomes;
    outbox::async_send_all(d, messages_of(std::vector<std::string>(5, "throw")), 3,
                           [&](std::vector<outbox::SendOutcome> o) { outcomes = std::move(o); });
    CHECK_FALSE(outcomes);  // never inside the call
    io.run();
    REQUIRE(outcomes);
    REQUIRE(outcomes->size() == 5);
    for (const auto& o : *outcomes) CHECK(o.error == outbox::Errc::target_unavailable);
    CHECK(sent.empty());
}
