// The async surface of Destination without a network: the default token (co_await returns
// the Receipt, a failure throws SendError keeping it), with_receipt over other tokens, and
// that the adapter keeps the handler's executor and cancellation slot.
#include "catch.hpp"

#include <outbox/destination.hpp>
#include <outbox/send_error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <optional>
#include <string>

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Completes each send on its executor with the error and Receipt it is told to, and records
// what the handler it was given says about itself.
class ScriptedDestination final : public outbox::Destination {
  public:
    explicit ScriptedDestination(asio::any_io_executor ex) : ex_(std::move(ex)) {}

    error_code next_error;
    outbox::Receipt next_receipt;
    int sends = 0;
    int closes = 0;
    std::string last_body;
    bool slot_connected = false;

    executor_type get_executor() const noexcept override { return ex_; }
    outbox::DestinationStats stats() const override { return {}; }
    void set_dead_letter_handler(outbox::DeadLetterHandler) override {}

  protected:
    void do_send(outbox::Message&& message, SendHandler handler) override {
        ++sends;
        last_body = std::move(message.body);
        slot_connected = asio::get_associated_cancellation_slot(handler).is_connected();
        // As the destinations complete: posted, on the handler's associated executor.
        asio::post(ex_, asio::append(std::move(handler), next_error, next_receipt));
    }
    void do_close(std::chrono::milliseconds, CloseHandler handler) override {
        ++closes;
        asio::post(ex_, [h = std::move(handler)]() mutable { std::move(h)(error_code{}); });
    }

  private:
    asio::any_io_executor ex_;
};

outbox::Receipt refused_receipt() {
    outbox::Receipt r;
    r.attempts = 3;
    r.staged_url = "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=x";
    r.diagnostics.http_status = 400;
    r.diagnostics.code = "AccessDenied";
    r.diagnostics.message = "not allowed";
    return r;
}

}  // namespace

TEST_CASE("co_await with no token: the Receipt on success, a SendError keeping it on failure") {
    asio::io_context io;
    ScriptedDestination d(io.get_executor());
    std::optional<outbox::Receipt> delivered;
    std::optional<outbox::SendError> refused;
    bool caught_as_system_error = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            d.next_receipt.message_id = "m-1";
            d.next_receipt.attempts = 1;
            // Named messages: GCC 12 mishandles a braced temporary inside co_await.
            outbox::Message first, second, third;
            delivered = co_await d.async_send(std::move(first));
            d.next_error = outbox::Errc::service_error;
            d.next_receipt = refused_receipt();
            try {
                co_await d.async_send(std::move(second));
            } catch (const outbox::SendError& e) {
                refused = e;
            }
            try {
                co_await d.async_send(std::move(third));
            } catch (const boost::system::system_error& e) {  // what callers caught before
                caught_as_system_error = e.code() == outbox::Errc::service_error;
            }
            co_await d.async_close(std::chrono::seconds(1));
        },
        asio::detached);
    io.run();
    REQUIRE(delivered);
    CHECK(delivered->message_id == "m-1");
    CHECK(delivered->attempts == 1);
    REQUIRE(refused);
    CHECK(refused->code() == outbox::Errc::service_error);
    CHECK(refused->receipt().attempts == 3);
    CHECK(refused->receipt().diagnostics.code == "AccessDenied");
    CHECK(refused->receipt().staged_url.starts_with("https://bucket"));
    CHECK_THAT(std::string(refused->what()), Catch::Contains("AccessDenied: not allowed"));
    CHECK(caught_as_system_error);
    CHECK(d.sends == 3);
    CHECK(d.closes == 1);
    // With nothing said but the error, what() is the error's message alone.
    CHECK(std::string(outbox::SendError(outbox::Errc::timeout, {}).what())
              .starts_with(make_error_code(outbox::Errc::timeout).message()));
    // A const adapter is a token too.
    const auto const_token = outbox::with_receipt([](std::exception_ptr, outbox::Receipt) {});
    d.async_send(outbox::Message{}, const_token);
    CHECK(d.sends == 4);
}

TEST_CASE("the default token is lazy: nothing is sent until the operation is awaited") {
    asio::io_context io;
    ScriptedDestination d(io.get_executor());
    d.next_receipt.message_id = "m-3";
    auto op = d.async_send(outbox::Message{});
    io.poll();
    CHECK(d.sends == 0);
    io.restart();  // poll() ran out of work, which stops the context
    std::optional<outbox::Receipt> receipt;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { receipt = co_await std::move(op); }, asio::detached);
    io.run();
    CHECK(d.sends == 1);
    REQUIRE(receipt);
    CHECK(receipt->message_id == "m-3");
}

TEST_CASE(
    "with_receipt over a callback, use_awaitable, and with the handler's executor and "
    "cancellation slot kept") {
    asio::io_context io;
    ScriptedDestination d(io.get_executor());
    d.next_error = outbox::Errc::throttled;
    d.next_receipt = refused_receipt();
    auto strand = asio::make_strand(io);
    asio::cancellation_signal cancel;
    bool on_strand = false;
    std::exception_ptr error;
    d.async_send(
        outbox::Message{},
        outbox::with_receipt(asio::bind_cancellation_slot(
            cancel.slot(), asio::bind_executor(strand, [&](std::exception_ptr e, outbox::Receipt) {
                on_strand = strand.running_in_this_thread();
                error = e;
            }))));
    CHECK(d.slot_connected);
    io.run();
    CHECK(on_strand);
    REQUIRE(error);
    try {
        std::rethrow_exception(error);
    } catch (const outbox::SendError& e) {
        CHECK(e.code() == outbox::Errc::throttled);
        CHECK(e.receipt().diagnostics.http_status == 400);
    }

    io.restart();
    d.next_error = {};
    d.next_receipt = {};
    d.next_receipt.message_id = "m-2";
    std::string id;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            outbox::Message m;
            const outbox::Receipt r =
                co_await d.async_send(std::move(m), outbox::with_receipt(asio::use_awaitable));
            id = r.message_id;
        },
        asio::detached);
    io.run();
    CHECK(id == "m-2");
}

TEST_CASE("async_send moves an rvalue message in, copies an lvalue, and a deferred send its own") {
    asio::io_context io;
    ScriptedDestination d(io.get_executor());
    int completed = 0;
    const auto count = [&](error_code ec, const outbox::Receipt&) {
        CHECK(!ec);
        ++completed;
    };

    outbox::Message moved;
    moved.body = std::string(100, 'm');  // long enough to live on the heap: it is taken
    d.async_send(std::move(moved), count);
    CHECK(d.last_body == std::string(100, 'm'));
    CHECK(moved.body.empty());

    outbox::Message kept;
    kept.body = std::string(100, 'k');
    d.async_send(kept, count);
    CHECK(d.last_body == std::string(100, 'k'));
    CHECK(kept.body == std::string(100, 'k'));

    // A deferred operation keeps its arguments: the message given to async_send may be gone
    // before it starts, and an lvalue operation may start twice.
    auto later = [&] {
        outbox::Message temporary;
        temporary.body = std::string(100, 'd');
        return d.async_send(std::move(temporary), asio::deferred);
    }();
    later(count);
    CHECK(d.last_body == std::string(100, 'd'));
    later(count);
    CHECK(d.last_body == std::string(100, 'd'));

    io.run();
    CHECK(d.sends == 4);
    CHECK(completed == 4);
}
