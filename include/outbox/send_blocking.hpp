// Sending from a program that has no event loop of its own.
#pragma once

#include <outbox/destination.hpp>

#include <chrono>
#include <future>
#include <utility>

namespace outbox {

/// Sends and waits. The destination's executor must be run by another thread (for example
/// a boost::asio::thread_pool); calling this from that executor's own thread deadlocks.
/// Returns the receipt; the error, if any, goes to `ec`.
inline Receipt send_blocking(Destination& destination, Message message,
                             boost::system::error_code& ec) {
    std::promise<std::pair<boost::system::error_code, Receipt>> done;
    auto result = done.get_future();
    destination.async_send(std::move(message), [&done](boost::system::error_code e, Receipt r) {
        done.set_value({e, std::move(r)});
    });
    auto [error, receipt] = result.get();
    ec = error;
    return std::move(receipt);
}

/// Closes and waits, as above.
inline boost::system::error_code close_blocking(Destination& destination,
                                                std::chrono::milliseconds deadline) {
    std::promise<boost::system::error_code> done;
    auto result = done.get_future();
    destination.async_close(deadline, [&done](boost::system::error_code e) { done.set_value(e); });
    return result.get();
}

}  // namespace outbox
