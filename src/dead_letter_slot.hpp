// Where a destination keeps its dead-letter handler: set from any thread, read once per
// failed message, and never called with a lock held.
#pragma once

#include <outbox/dead_letter.hpp>
#include <outbox/logging.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace outbox::detail {

class DeadLetterSlot {
  public:
    void set(DeadLetterHandler handler) {
        auto shared = handler ? std::make_shared<const DeadLetterHandler>(std::move(handler)) : nullptr;
        std::lock_guard lock(mutex_);
        handler_ = std::move(shared);
    }
    std::shared_ptr<const DeadLetterHandler> get() const {
        std::lock_guard lock(mutex_);
        return handler_;
    }

    /// Calls `handler` (if any); what it throws is logged, not propagated.
    static void deliver(const std::shared_ptr<const DeadLetterHandler>& handler, DeadLetter&& letter,
                        const Logger& logger) noexcept {
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

}  // namespace outbox::detail
