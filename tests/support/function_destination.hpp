// An application's Destination for tests without a network: a function decides each message's
// outcome, or throws from async_send as a broken connector would. The answer is posted on the
// executor, as destinations complete.
#pragma once

#include <outbox/destination.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>

#include <functional>
#include <utility>

namespace outbox::test {

class FunctionDestination final : public outbox::Destination {
  public:
    struct Outcome {
        boost::system::error_code ec{};
        Receipt receipt{};
    };
    using Decide = std::function<Outcome(const Message&)>;

    FunctionDestination(boost::asio::any_io_executor ex, Decide decide)
        : ex_(std::move(ex)), decide_(std::move(decide)) {}

    executor_type get_executor() const noexcept override { return ex_; }
    DestinationStats stats() const override { return {}; }
    void set_dead_letter_handler(DeadLetterHandler) override {}

  protected:
    void do_send(Message&& message, SendHandler handler) override {
        Outcome o = decide_(message);  // may throw: that is the point
        boost::asio::post(ex_, boost::asio::append(std::move(handler), o.ec, std::move(o.receipt)));
    }
    void do_close(std::chrono::milliseconds, CloseHandler handler) override {
        boost::asio::post(ex_,
                          boost::asio::append(std::move(handler), boost::system::error_code{}));
    }

  private:
    boost::asio::any_io_executor ex_;
    Decide decide_;
};

}  // namespace outbox::test
