// An application's credentials provider that throws instead of answering, for the tests of what
// each user of a provider does then. Without a network: once told to stop throwing, it answers
// fixed keys, posted on its executor.
#pragma once

#include <outbox/credentials_provider.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>

#include <stdexcept>
#include <string>
#include <utility>

namespace outbox::test {

class ThrowingCredentials final : public CredentialsProvider {
  public:
    /// Fetches throw std::runtime_error(fetch_error) while `throwing`; credentials_at_hand
    /// throws std::runtime_error(at_hand_error) when that is not empty.
    explicit ThrowingCredentials(boost::asio::any_io_executor ex,
                                 std::string fetch_error = "the key service is down",
                                 std::string at_hand_error = {})
        : ex_(std::move(ex)),
          fetch_error_(std::move(fetch_error)),
          at_hand_error_(std::move(at_hand_error)) {}

    bool throwing = true;
    int calls = 0;  // fetches asked for

    std::string name() const override { return "throwing"; }
    bool credentials_at_hand(Credentials&) override {
        if (!at_hand_error_.empty()) throw std::runtime_error(at_hand_error_);
        return false;
    }

  protected:
    void do_get_credentials(Handler h) override {
        ++calls;
        if (throwing) throw std::runtime_error(fetch_error_);
        boost::asio::post(ex_, boost::asio::append(std::move(h), boost::system::error_code{},
                                                   Credentials{"AKT", "SKT", {}, {}}));
    }

  private:
    boost::asio::any_io_executor ex_;
    std::string fetch_error_;
    std::string at_hand_error_;
};

}  // namespace outbox::test
