// How every destination finishes a send, one vocabulary for SQS and Kafka: the outcome counted,
// the dead letter (a failure, when a dead-letter handler is set) delivered, then the send's
// handler run on its own executor. Private to the library.
#pragma once

#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"

#include <outbox/dead_letter.hpp>
#include <outbox/destination.hpp>
#include <outbox/logging.hpp>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace outbox::detail {

class SendCompletion {
  public:
    /// Counts the outcome and detaches the handler from its cancellation slot. On a failure,
    /// with a dead-letter handler set, `message` goes to it as sent to `target`.
    SendCompletion(DestinationCounters& stats, const DeadLetterSlot& dead_letters,
                   const Logger& logger, const std::string& target,
                   Destination::SendHandler&& handler, boost::system::error_code ec,
                   Receipt&& receipt, Message&& message,
                   std::chrono::steady_clock::time_point accepted_at)
        : handler_(std::move(handler)), ec_(ec), receipt_(std::move(receipt)) {
        settle(stats, dead_letters, logger, target, std::move(message), accepted_at);
    }
    /// The same, with the Receipt written in place by `fill_receipt(Receipt&)`: a Receipt's
    /// move is nine strings' (Kafka builds each one fresh, so it need not move it here).
    template <class FillReceipt>
    requires std::is_invocable_v<FillReceipt&, Receipt&> SendCompletion(
        DestinationCounters& stats, const DeadLetterSlot& dead_letters, const Logger& logger,
        const std::string& target, Destination::SendHandler&& handler, boost::system::error_code ec,
        FillReceipt&& fill_receipt, Message&& message,
        std::chrono::steady_clock::time_point accepted_at)
        : handler_(std::move(handler)), ec_(ec) {
        fill_receipt(receipt_);
        settle(stats, dead_letters, logger, target, std::move(message), accepted_at);
    }
    // Moved by construction only: Boost 1.81's any_completion_handler move-assignment recurses
    // forever.
    SendCompletion(SendCompletion&&) noexcept = default;
    SendCompletion& operator=(SendCompletion&&) = delete;

    /// The dead letter first, then the handler, dispatched to its associated executor. Call it
    /// from a job on `running`, the destination's executor (post_completion), never inside
    /// async_send.
    void run(const boost::asio::any_completion_executor& running) {
        if (dead_letter_)
            DeadLetterSlot::deliver(dead_letter_->handler, std::move(dead_letter_->letter),
                                    dead_letter_->logger);
        // A handler bound to the executor we run on (or to none) is called here, as dispatch
        // would, without its detour: append and binder each move the Receipt (nine strings)
        // again, which was the largest cost per Kafka message.
        if (boost::asio::get_associated_executor(handler_, running) == running)
            return std::move(handler_)(ec_, std::move(receipt_));
        boost::asio::dispatch(boost::asio::append(std::move(handler_), ec_, std::move(receipt_)));
    }

  private:
    // Counts the outcome, detaches the handler from its cancellation slot, and on a failure
    // (with a dead-letter handler set) keeps `message` for it as sent to `target`.
    void settle(DestinationCounters& stats, const DeadLetterSlot& dead_letters,
                const Logger& logger, const std::string& target, Message&& message,
                std::chrono::steady_clock::time_point accepted_at) {
        auto slot = boost::asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) slot.clear();
        if (!ec_) {
            stats.delivered(message.body.size(), accepted_at);
            return;
        }
        stats.failed();
        if (auto dead_letter = dead_letters.get())
            dead_letter_.reset(
                new DeadLetterDelivery{DeadLetter{std::move(message), ec_, receipt_, target},
                                       std::move(dead_letter), logger});
    }

    struct DeadLetterDelivery {
        DeadLetter letter;
        std::shared_ptr<const DeadLetterHandler> handler;
        Logger logger;
    };
    Destination::SendHandler handler_;
    boost::system::error_code ec_;
    Receipt receipt_;
    std::unique_ptr<DeadLetterDelivery> dead_letter_{};
};

inline void post_completion(const boost::asio::any_io_executor& executor,
                            SendCompletion completion) {
    boost::asio::post(executor, [executor, c = std::move(completion)]() mutable {
        c.run(boost::asio::any_completion_executor(executor));
    });
}

/// Runs `done` in order, on the destination's executor. Should a handler throw, the rest are
/// posted one by one (they still complete) and the exception goes on.
inline void run_completions(const boost::asio::any_io_executor& executor,
                            std::vector<SendCompletion>& done) {
    const boost::asio::any_completion_executor running(executor);  // converted once
    for (std::size_t i = 0; i < done.size(); ++i) {
        try {
            done[i].run(running);
        } catch (...) {
            for (std::size_t j = i + 1; j < done.size(); ++j)
                post_completion(executor, std::move(done[j]));
            throw;
        }
    }
}

/// Completions gathered in chunks of fixed room: a burst of thousands never moves those already
/// made (each holds a Receipt of nine strings) nor asks for one large block, which the kernel
/// maps and faults in page by page. Emptied by run_and_clear(), its room kept for the next.
class CompletionChunks {
  public:
    static constexpr std::size_t chunk_size = 256;

    template <class... Args>
    void emplace_back(Args&&... args) {
        if (filling_ == chunks_.size()) {
            chunks_.emplace_back();
            chunks_.back().reserve(chunk_size);
        }
        auto& chunk = chunks_[filling_];
        chunk.emplace_back(std::forward<Args>(args)...);
        if (chunk.size() == chunk_size) ++filling_;
        ++size_;
    }

    std::size_t size() const noexcept { return size_; }
    std::size_t chunks_kept() const noexcept { return chunks_.size(); }

    /// Runs them in order, as run_completions does (should a handler throw, the rest are
    /// posted and the exception goes on), and empties the chunks, keeping their room.
    void run_and_clear(const boost::asio::any_io_executor& executor) {
        struct Clear {
            CompletionChunks& chunks;
            ~Clear() { chunks.clear(); }
        } clear{*this};
        for (std::size_t c = 0; c < chunks_.size() && c <= filling_; ++c) {
            try {
                run_completions(executor, chunks_[c]);  // posts the rest of its chunk on a throw
            } catch (...) {
                for (std::size_t d = c + 1; d < chunks_.size() && d <= filling_; ++d)
                    for (auto& rest : chunks_[d]) post_completion(executor, std::move(rest));
                throw;
            }
        }
    }

    /// Posts each one (in order) to complete on `executor`, as run_completions does with those
    /// left after a throw, and empties the chunks: for a gatherer interrupted by an exception.
    void post_and_clear(const boost::asio::any_io_executor& executor) noexcept {
        try {
            for (std::size_t c = 0; c < chunks_.size() && c <= filling_; ++c)
                for (auto& completion : chunks_[c])
                    post_completion(executor, std::move(completion));
        } catch (...) {  // no room to post: nothing more can be done for them
        }
        clear();
    }

    /// Keeps the room of at most `count` chunks (emptied first with clear()).
    void keep_at_most(std::size_t count) noexcept {
        if (chunks_.size() > count)
            chunks_.erase(chunks_.begin() + static_cast<std::ptrdiff_t>(count), chunks_.end());
        filling_ = std::min(filling_, chunks_.size());
    }

    /// Empty, room kept.
    void clear() noexcept {
        for (std::size_t c = 0; c < chunks_.size() && c <= filling_; ++c) chunks_[c].clear();
        filling_ = 0;
        size_ = 0;
    }

    /// Empty, room given back.
    void release() noexcept {
        std::vector<std::vector<SendCompletion>>().swap(chunks_);
        filling_ = 0;
        size_ = 0;
    }

    void swap(CompletionChunks& other) noexcept {
        chunks_.swap(other.chunks_);
        std::swap(filling_, other.filling_);
        std::swap(size_, other.size_);
    }

  private:
    std::vector<std::vector<SendCompletion>> chunks_;
    std::size_t filling_ = 0;  // the chunk the next one goes into
    std::size_t size_ = 0;
};

/// One job for the completions of one event (a batch's ten replies): one post, not ten.
inline void post_completions(const boost::asio::any_io_executor& executor,
                             std::vector<SendCompletion> done) {
    if (done.size() == 1) return post_completion(executor, std::move(done.front()));
    boost::asio::post(executor, [executor, done = std::move(done)]() mutable {
        run_completions(executor, done);
    });
}

}  // namespace outbox::detail
