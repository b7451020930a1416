#include <outbox/send_all.hpp>

#include "core/thrown_text.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include <memory>
#include <mutex>
#include <optional>

namespace outbox::detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// Shared by the sends in flight; the last completion hands the outcomes over.
struct SendAll : std::enable_shared_from_this<SendAll> {
    SendAll(Destination& d, std::vector<Message> m, std::size_t limit, SendAllHandler h)
        : destination(d), messages(std::move(m)), outcomes(messages.size()), max_in_flight(limit) {
        handler.emplace(std::move(h));  // any_completion_handler: move-construct only
        executor = destination.get_executor();
    }

    Destination& destination;
    std::vector<Message> messages;
    std::vector<SendOutcome> outcomes;
    std::size_t max_in_flight;
    std::optional<SendAllHandler> handler;
    asio::any_io_executor executor;  // posts the completion; it runs on the handler's own

    std::mutex mutex;  // completions arrive on any thread
    std::size_t next = 0;
    std::size_t completed = 0;
    bool finished = false;

    // Under the lock: true for the one caller that sees the last completion.
    bool take_finish() {
        if (finished || completed != messages.size()) return false;
        finished = true;
        return true;
    }

    void start() {
        auto slot = asio::get_associated_cancellation_slot(*handler);
        if (slot.is_connected())
            slot.assign([weak = weak_from_this()](asio::cancellation_type) {
                if (auto self = weak.lock()) self->cancel();
            });
        std::vector<std::size_t> first;
        bool empty = false;
        {
            std::lock_guard lock(mutex);
            while (next < messages.size() && next < max_in_flight) first.push_back(next++);
            empty = take_finish();
        }
        for (std::size_t i : first) send(i);
        if (empty) finish();
    }

    // Sends message i. Should async_send throw (an application's destination), that message
    // fails and the next takes its turn: left unanswered, it would keep the operation from
    // ever completing, and the exception would escape into a completion's executor.
    void send(std::size_t i) {
        for (std::optional<std::size_t> turn = i; turn;) {
            try {
                // async_send never completes inside the call, so this never recurses.
                destination.async_send(
                    std::move(messages[*turn]),
                    [self = shared_from_this(), at = *turn](error_code ec, Receipt r) {
                        self->on_sent(at, ec, std::move(r));
                    });
                return;
            } catch (...) {
                Receipt r;
                r.diagnostics.message = "the destination threw: " + thrown_text();
                turn = settle(*turn, make_error_code(Errc::target_unavailable), std::move(r));
            }
        }
    }

    void on_sent(std::size_t i, error_code ec, Receipt r) {
        if (const auto launch = settle(i, ec, std::move(r))) send(*launch);
    }

    // Records message i's outcome; the next message to send, if any. The last one finishes.
    std::optional<std::size_t> settle(std::size_t i, error_code ec, Receipt r) {
        std::optional<std::size_t> launch;
        bool all_done = false;
        {
            std::lock_guard lock(mutex);
            if (finished) return launch;  // a destination that answered and threw too
            outcomes[i] = {ec, std::move(r)};
            ++completed;
            if (next < messages.size()) launch = next++;
            all_done = take_finish();
        }
        if (all_done) finish();
        return launch;
    }

    void cancel() {
        bool all_done = false;
        {
            std::lock_guard lock(mutex);
            for (; next < messages.size(); ++next) {
                outcomes[next].error = asio::error::operation_aborted;
                outcomes[next].receipt.diagnostics.message = "cancelled before it was sent";
                ++completed;
            }
            all_done = take_finish();
        }
        if (all_done) finish();
    }

    // The slot's handler is left in place: clearing it here, on a send's completion thread,
    // could race an emit on the caller's executor. It holds only a weak reference, and a late
    // cancel finds nothing left to do.
    void finish() { asio::post(executor, asio::append(std::move(*handler), std::move(outcomes))); }
};

}  // namespace

void start_send_all(Destination& destination, std::vector<Message> messages,
                    std::size_t max_in_flight, SendAllHandler handler) {
    auto op = std::make_shared<SendAll>(destination, std::move(messages),
                                        max_in_flight == 0 ? 1 : max_in_flight, std::move(handler));
    op->start();
}

}  // namespace outbox::detail
