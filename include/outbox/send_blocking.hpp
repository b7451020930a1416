// Sending from a program that has no event loop of its own.
#pragma once

#include <outbox/destination.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <tuple>

#include <utility>

namespace outbox {

/// Sends and waits. The destination's executor must be run by another thread (for example
/// a boost::asio::thread_pool); calling this from that executor's own thread deadlocks.
/// Returns the receipt; the error, if any, goes to `ec`.
inline Receipt send_blocking(Destination& destination, Message message,
                             boost::system::error_code& ec) {
    auto future =
        destination.async_send(std::move(message), boost::asio::as_tuple(boost::asio::use_future));
    auto [error, receipt] = future.get();
    ec = error;
    return std::move(receipt);
}

/// Closes and waits, as above.
inline boost::system::error_code close_blocking(Destination& destination,
                                                std::chrono::milliseconds deadline) {
    auto future = destination.async_close(deadline, boost::asio::as_tuple(boost::asio::use_future));
    return std::get<0>(future.get());
}

}  // namespace outbox
