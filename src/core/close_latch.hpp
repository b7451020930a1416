// A destination's close, apart from what closing does (SQS and Kafka share it): one close
// runs at a time; a close while one runs completes at once with operation_aborted; a close
// after one has ended completes at once as that one ended. Not thread-safe: the destination's
// strand or lock guards it.
#pragma once

#include <outbox/destination.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <optional>
#include <utility>

namespace outbox::detail {

class CloseLatch {
  public:
    /// True when `handler` starts the close: the caller then arms its deadline and begins.
    /// Otherwise the handler is completed (posted to `executor`) and the caller does nothing.
    bool begin(Destination::CloseHandler&& handler, const boost::asio::any_io_executor& executor) {
        if (running_ || ended_) {
            const boost::system::error_code ec =
                running_ ? boost::system::error_code(boost::asio::error::operation_aborted)
                         : *ended_;
            boost::asio::post(executor, boost::asio::append(std::move(handler), ec));
            return false;
        }
        running_.emplace(std::move(handler));
        return true;
    }

    /// A close is running: begun and not yet ended.
    bool running() const noexcept { return running_.has_value(); }

    /// The destination has finished: the running close (if any) completes with `result`
    /// (Errc::close_timeout when its deadline failed messages, else success), and so does
    /// every later close.
    void end(boost::system::error_code result, const boost::asio::any_io_executor& executor) {
        ended_ = result;
        if (!running_) return;
        auto handler = std::move(*running_);
        running_.reset();
        boost::asio::post(executor, boost::asio::append(std::move(handler), result));
    }

  private:
    std::optional<Destination::CloseHandler> running_;
    std::optional<boost::system::error_code> ended_;
};

}  // namespace outbox::detail
