// async_send_all over a destination whose async_send throws for some messages (an
// application's Destination): each such message fails with its own outcome, the others are
// sent, and the operation completes. Without a network: the destination answers by posting.
#include "catch.hpp"

#include <outbox/send_all.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Throws for a body starting with "throw", else delivers it (its body as the message id).
class ThrowsOnSome final : public outbox::Destination {
  public:
    explicit ThrowsOnSome(asio::any_io_executor ex) : ex_(std::move(ex)) {}

    std::vector<std::string> sent;

    executor_type get_executor() const noexcept override { return ex_; }
    outbox::DestinationStats stats() const override { return {}; }
    void set_dead_letter_handler(outbox::DeadLetterHandler) override {}

  protected:
    void do_send(outbox::Message&& message, SendHandler handler) override {
        if (message.body.starts_with("throw"))
            throw std::runtime_error("no route to " + message.body);
        sent.push_back(message.body);
        outbox::Receipt r;
        r.message_id = message.body;
        asio::post(ex_, asio::append(std::move(handler), error_code{}, std::move(r)));
    }
    void do_close(std::chrono::milliseconds, CloseHandler handler) override {
        asio::post(ex_, asio::append(std::move(handler), error_code{}));
    }

  private:
    asio::any_io_executor ex_;
};

}  // namespace

TEST_CASE("async_send_all: a message whose send throws fails on its own, and the rest go on") {
    asio::io_context io;
    ThrowsOnSome d(io.get_executor());
    // Two in flight: "throw-1" is among the first handed over, "throw-3" and "throw-4" are
    // handed over from completions (the second right after the first throws).
    const std::vector<std::string> bodies = {"a", "throw-1", "b", "throw-3", "throw-4", "c"};
    std::vector<outbox::Message> messages;
    for (const auto& b : bodies) {
        outbox::Message m;
        m.body = b;
        messages.push_back(std::move(m));
    }
    std::optional<std::vector<outbox::SendOutcome>> outcomes;
    outbox::async_send_all(d, std::move(messages), 2,
                           [&](std::vector<outbox::SendOutcome> o) { outcomes = std::move(o); });
    REQUIRE_NOTHROW(io.run());

    REQUIRE(outcomes);
    REQUIRE(outcomes->size() == bodies.size());
    CHECK(d.sent == std::vector<std::string>{"a", "b", "c"});
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
    ThrowsOnSome d(io.get_executor());
    std::vector<outbox::Message> messages(5);
    for (auto& m : messages) m.body = "throw";
    std::optional<std::vector<outbox::SendOutcome>> outcomes;
    outbox::async_send_all(d, std::move(messages), 3,
                           [&](std::vector<outbox::SendOutcome> o) { outcomes = std::move(o); });
    CHECK_FALSE(outcomes);  // never inside the call
    io.run();
    REQUIRE(outcomes);
    REQUIRE(outcomes->size() == 5);
    for (const auto& o : *outcomes) CHECK(o.error == outbox::Errc::target_unavailable);
    CHECK(d.sent.empty());
}
