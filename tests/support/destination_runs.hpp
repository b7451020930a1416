// Driving a Destination from a test: send a list of messages and run the event loop until
// each has completed; close and wait. Shared by the SQS and Kafka integration tests.
#pragma once

#include "catch.hpp"

#include <outbox/destination.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace outbox::test {

struct Outcome {
    boost::system::error_code ec;
    Receipt receipt;
    int completions = 0;
};

/// Starts every send, then runs `io` until all have completed (at most a minute of silence).
inline std::vector<Outcome> send_all(boost::asio::io_context& io, Destination& d,
                                     std::vector<Message> messages) {
    std::vector<Outcome> outcomes(messages.size());
    std::size_t done = 0;
    for (std::size_t i = 0; i < messages.size(); ++i)
        d.async_send(std::move(messages[i]), [&, i](boost::system::error_code ec, Receipt r) {
            outcomes[i].ec = ec;
            outcomes[i].receipt = std::move(r);
            ++outcomes[i].completions;
            ++done;
        });
    io.restart();
    while (done < outcomes.size() && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(done == outcomes.size());
    return outcomes;
}

/// Closes with `deadline` and runs `io` until close completes; returns its result.
inline boost::system::error_code close_destination(
    boost::asio::io_context& io, Destination& d,
    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    bool closed = false;
    boost::system::error_code result;
    d.async_close(deadline, [&](boost::system::error_code ec) {
        result = ec;
        closed = true;
    });
    io.restart();
    while (!closed && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(closed);
    return result;
}

inline Message text_message(std::string body) {
    Message m;
    m.body = std::move(body);
    return m;
}

}  // namespace outbox::test
