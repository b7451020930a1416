// Where messages go. A Destination accepts messages and completes each one exactly once:
// delivered (with a Receipt) or failed with a definite error. SqsDestination,
// KafkaDestination and RoutingDestination (one destination per target) implement it; the
// durable outbox (outbox.hpp) delivers through them.
#pragma once

#include <outbox/dead_letter.hpp>
#include <outbox/destination_stats.hpp>
#include <outbox/error.hpp>
#include <outbox/message.hpp>
#include <outbox/receipt.hpp>

#include <outbox/send_error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

namespace outbox {

class Destination {
  public:
    using executor_type = boost::asio::any_io_executor;
    /// A send's handler, type-erased once, as do_send receives it. It takes the Receipt by
    /// rvalue reference where async_send's signature has it by value: through
    /// any_completion_handler a by-value argument is moved twice more, and a Receipt's move is
    /// nine strings'. Complete it with `std::move(handler)(ec, std::move(receipt))`.
    using SendHandler =
        boost::asio::any_completion_handler<void(boost::system::error_code, Receipt&&)>;
    using CloseHandler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    virtual ~Destination() = default;

    virtual executor_type get_executor() const noexcept = 0;

    /// Counters and the latency histogram so far; cheap, callable from any thread.
    virtual DestinationStats stats() const = 0;

    /// Every message that fails from now on is handed to `handler` (see DeadLetterHandler)
    /// before its send completes. Set it before the first send to see every failure; an empty
    /// handler stops the calls. Callable from any thread.
    virtual void set_dead_letter_handler(DeadLetterHandler handler) = 0;

    /// The token async_send uses when none is given: `co_await d.async_send(m)` in an
    /// asio::awaitable returns the Receipt, and a failure throws SendError (which keeps it).
    /// (use_awaitable rather than deferred: Boost 1.81's awaitable cannot await a deferred
    /// operation whose completion starts with an exception_ptr.)
    using default_send_token = with_receipt_t<boost::asio::use_awaitable_t<>>;

    /// Queues `message` for delivery, at least once: a request whose reply was lost is sent
    /// again. Waits (without blocking a thread) while the destination holds its maximum of
    /// messages or bytes in flight. Safe to call from any thread.
    ///
    /// Completion: void(error_code, Receipt); with_receipt(token) makes it
    /// void(std::exception_ptr, Receipt) with a SendError.
    /// Errors: Errc::invalid_message and Errc::payload_too_large at once for a message the
    /// destination can never accept; the last attempt's error when attempts or the deadline
    /// ran out (is_retryable() tells which kind); Errc::service_error for refusals (see
    /// Receipt::diagnostics); asio::error::operation_aborted when cancelled or closed.
    /// Executor: the handler's associated executor (else the destination's), never inside
    /// this call.
    /// Cancellation (terminal, partial, total): honoured while the message waits for
    /// capacity, for its batch, or for its next attempt; it completes with operation_aborted
    /// (with Errc::outcome_unknown instead when an earlier attempt's reply was lost). Once
    /// in a request, the message completes with that request's outcome. KafkaDestination
    /// honours it only while the message waits for room: once handed to librdkafka, a
    /// message cannot be taken back, and it completes with librdkafka's report.
    /// Lifetimes: the message is moved in (an lvalue is copied) before async_send returns.
    /// The destination must be alive when the operation starts (for a lazy token such as the
    /// default, when it is awaited); destroying it completes what is still pending with
    /// operation_aborted.
    template <class CompletionToken = default_send_token>
    auto async_send(Message&& message, CompletionToken&& token = default_send_token{}) {
        // By reference down to where the destination keeps it: a Message's move is eight
        // strings'. A token that starts the operation later keeps its own copy of the
        // arguments, moved in here.
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, Receipt)>(
            SendInitiation{this}, token, std::move(message));
    }
    template <class CompletionToken = default_send_token>
    auto async_send(const Message& message, CompletionToken&& token = default_send_token{}) {
        return async_send(Message(message), std::forward<CompletionToken>(token));
    }

    /// Stops accepting messages (later sends fail with operation_aborted), delivers what is
    /// queued within `deadline`, then fails what is left with operation_aborted.
    ///
    /// Completion: void(error_code). Errors: none unless something failed to flush
    /// (Errc::close_timeout when the deadline passed first). A close while another runs
    /// completes at once with operation_aborted; one after a close has ended completes at
    /// once as that one ended.
    /// Executor: the handler's associated executor (else the destination's).
    /// Cancellation: not supported; the deadline bounds it.
    /// Lifetimes: as async_send. The default token is asio::use_awaitable
    /// (`co_await d.async_close(5s)` throws boost::system::system_error on an error).
    template <class CompletionToken = boost::asio::use_awaitable_t<>>
    auto async_close(std::chrono::milliseconds deadline, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            CloseInitiation{this}, token, deadline);
    }

  private:
    // Named initiations that carry the destination's executor, so token adapters that look
    // for one (asio::cancel_after in later Boost versions) find it.
    struct SendInitiation {
        Destination* self;
        executor_type get_executor() const noexcept { return self->get_executor(); }
        // The message by reference down to do_send: each move of a Message moves its eight
        // strings. A token that keeps the arguments and may start again (an lvalue deferred
        // operation) passes an lvalue, which is copied.
        template <class Handler, class MessageArg>
        void operator()(Handler&& handler, MessageArg&& message) const {
            if constexpr (std::is_lvalue_reference_v<MessageArg>)
                self->do_send(Message(message), SendHandler(std::forward<Handler>(handler)));
            else
                self->do_send(std::move(message), SendHandler(std::forward<Handler>(handler)));
        }
    };
    struct CloseInitiation {
        Destination* self;
        executor_type get_executor() const noexcept { return self->get_executor(); }
        template <class Handler>
        void operator()(Handler&& handler, std::chrono::milliseconds deadline) const {
            self->do_close(deadline, CloseHandler(std::forward<Handler>(handler)));
        }
    };

  protected:
    /// `message` is the caller's, moved in by async_send: move it on, it is not used after.
    virtual void do_send(Message&& message, SendHandler handler) = 0;
    virtual void do_close(std::chrono::milliseconds deadline, CloseHandler handler) = 0;
};

}  // namespace outbox
