// Where a destination keeps its dead-letter handler: set from any thread, read once per
// failed message, and never called with a lock held.
#pragma once

#include <outbox/dead_letter.hpp>
#include <outbox/destination.hpp>
#include <outbox/logging.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace outbox::detail {

class DeadLetterSlot {
  public:
    void set(DeadLetterHandler handler) {
        auto shared =
            handler ? std::make_shared<const DeadLetterHandler>(std::move(handler)) : nullptr;
        std::lock_guard lock(mutex_);
        handler_ = std::move(shared);
    }
    std::shared_ptr<const DeadLetterHandler> get() const {
        std::lock_guard lock(mutex_);
        return handler_;
    }

    /// Calls `handler` (if any); what it throws is logged, not propagated.
    static void deliver(const std::shared_ptr<const DeadLetterHandler>& handler,
                        DeadLetter&& letter, const Logger& logger) noexcept {
        if (!handler) return;
        try {
            (*handler)(std::move(letter));
        } catch (const std::exception& e) {
            log_throw(logger, e.what());
        } catch (...) {
            log_throw(logger, "an exception not derived from std::exception");
        }
    }

  private:
    static void log_throw(const Logger& logger, const char* what) noexcept {
        try {
            logger.log(LogLevel::error, std::string("the dead-letter handler threw: ") + what);
        } catch (...) {
        }
    }

    mutable std::mutex mutex_;
    std::shared_ptr<const DeadLetterHandler> handler_;
};

/// Completes a send refused before it reached the destination's machinery: the dead letter
/// (if a handler is set), then the send's handler on its own executor; both posted to
/// `executor`, so neither runs inside async_send.
inline void post_refusal(const boost::asio::any_io_executor& executor, const DeadLetterSlot& slot,
                         Logger logger, Message message, boost::system::error_code ec,
                         std::string why, std::string target, Destination::SendHandler handler) {
    Receipt receipt;
    receipt.diagnostics.message = std::move(why);
    boost::asio::post(executor, [dead_letter = slot.get(), logger = std::move(logger),
                                 m = std::move(message), ec, r = std::move(receipt),
                                 target = std::move(target), h = std::move(handler)]() mutable {
        DeadLetterSlot::deliver(dead_letter, DeadLetter{std::move(m), ec, r, std::move(target)},
                                logger);
        boost::asio::dispatch(boost::asio::append(std::move(h), ec, std::move(r)));
    });
}

}  // namespace outbox::detail
