// Sending many messages without writing a worker pool: at most N in flight, one outcome per
// message. One co_await per send waits a round trip (and the batch's linger) per message;
// this keeps the destination's batches full instead. See docs/async-model.md.
#pragma once

#include <outbox/destination.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <cstddef>
#include <vector>

namespace outbox {

/// What became of one message of async_send_all.
struct SendOutcome {
    boost::system::error_code error{};
    Receipt receipt{};
};

namespace detail {
using SendAllHandler = boost::asio::any_completion_handler<void(std::vector<SendOutcome>)>;
void start_send_all(Destination& destination, std::vector<Message> messages,
                    std::size_t max_in_flight, SendAllHandler handler);
}  // namespace detail

/// Sends every message through `destination`, with at most `max_in_flight` (0 counts as 1)
/// handed over and not yet completed at a time, so memory stays bounded however many there
/// are. Completion: void(std::vector<SendOutcome>), one outcome per message in input order,
/// once every message has completed; on the handler's associated executor (else the
/// destination's), never inside this call. Each message completes exactly as async_send says;
/// one whose async_send throws (an application's Destination) fails with
/// Errc::target_unavailable, its Receipt's diagnostics naming what was thrown.
///
/// Cancellation (terminal, partial, total): messages not yet handed over complete with
/// operation_aborted; those handed over finish as they would (bounded by their deadline).
/// `destination` must outlive the operation.
template <class CompletionToken>
auto async_send_all(Destination& destination, std::vector<Message> messages,
                    std::size_t max_in_flight, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(std::vector<SendOutcome>)>(
        [&destination, max_in_flight](auto handler, std::vector<Message> list) {
            detail::start_send_all(destination, std::move(list), max_in_flight,
                                   detail::SendAllHandler(std::move(handler)));
        },
        token, std::move(messages));
}

}  // namespace outbox
