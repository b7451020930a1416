// The strand a component keeps its state on, as an any_io_executor. Private to the library.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

namespace outbox::detail {

/// A new strand of `executor`. Over the io_context's or thread pool's own executor type when
/// `executor` holds one: Boost 1.81's strand over a type-erased executor allocates on every
/// handler it runs (it queries the inner executor's blocking property, which any_executor
/// returns on the heap), and at 72 bytes it does not fit any_io_executor's inline storage,
/// so every copy with another property (each asynchronous operation makes one) allocates
/// too. The concrete strand is 24 bytes and fits.
inline boost::asio::any_io_executor make_strand_executor(
    const boost::asio::any_io_executor& executor) {
    if (const auto* io = executor.target<boost::asio::io_context::executor_type>())
        return boost::asio::make_strand(*io);
    if (const auto* pool = executor.target<boost::asio::thread_pool::executor_type>())
        return boost::asio::make_strand(*pool);
    return boost::asio::make_strand(executor);
}

}  // namespace outbox::detail
