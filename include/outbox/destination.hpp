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

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <utility>

namespace outbox {

class Destination {
  public:
    using executor_type = boost::asio::any_io_executor;
    using SendHandler =
        boost::asio::any_completion_handler<void(boost::system::error_code, Receipt)>;
    using CloseHandler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    virtual ~Destination() = default;

    virtual executor_type get_executor() const noexcept = 0;

    /// Counters and the latency histogram so far; cheap, callable from any thread.
    virtual DestinationStats stats() const = 0;

    /// Every message that fails from now on is handed to `handler` (see DeadLetterHandler)
    /// before its send completes. Set it before the first send to see every failure; an empty
    /// handler stops the calls. Callable from any thread.
    virtual void set_dead_letter_handler(DeadLetterHandler handler) = 0;

    /// Queues `message` for delivery. Completion: void(error_code, Receipt), on the
    /// handler's associated executor, never inside this call. Safe to call from any thread.
    ///
    /// Waits (without blocking a thread) while the destination holds its maximum of
    /// messages or bytes in flight. A message the destination can never accept fails at
    /// once: Errc::invalid_message, Errc::payload_too_large.
    ///
    /// Delivery is at least once: a request whose reply was lost is sent again.
    /// Errors: the last attempt's error when attempts or the deadline ran out
    /// (is_retryable() tells which kind), Errc::service_error for refusals (see
    /// Receipt::diagnostics), asio::error::operation_aborted when cancelled or closed.
    ///
    /// Cancellation (terminal, partial, total): honoured while the message waits for
    /// capacity, for its batch, or for its next attempt; it completes with operation_aborted
    /// (with Errc::outcome_unknown instead when an earlier attempt's reply was lost). Once
    /// in a request, the message completes with that request's outcome. KafkaDestination
    /// honours it only while the message waits for room: once handed to librdkafka, a
    /// message cannot be taken back, and it completes with librdkafka's report.
    template <class CompletionToken>
    auto async_send(Message message, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, Receipt)>(
            [this](auto handler, Message m) {
                do_send(std::move(m), SendHandler(std::move(handler)));
            },
            token, std::move(message));
    }

    /// Stops accepting messages (later sends fail with operation_aborted), delivers what is
    /// queued within `deadline`, then fails what is left with operation_aborted and
    /// completes with void(error_code) (no error unless something failed to flush).
    template <class CompletionToken>
    auto async_close(std::chrono::milliseconds deadline, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            [this, deadline](auto handler) {
                do_close(deadline, CloseHandler(std::move(handler)));
            },
            token);
    }

  protected:
    virtual void do_send(Message message, SendHandler handler) = 0;
    virtual void do_close(std::chrono::milliseconds deadline, CloseHandler handler) = 0;
};

}  // namespace outbox
