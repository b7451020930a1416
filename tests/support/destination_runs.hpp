// Driving a Destination from a test: send a list of messages and run the event loop until
// each has completed; close and wait. Shared by the SQS and Kafka integration tests.
#pragma once

#include "catch.hpp"

#include <outbox/destination.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
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

/// Collects a destination's dead letters (its handler may run on any executor thread).
struct DeadLetters {
    std::mutex mutex;
    std::vector<DeadLetter> letters;

    void attach(Destination& d) {
        d.set_dead_letter_handler([this](DeadLetter&& letter) {
            std::lock_guard lock(mutex);
            letters.push_back(std::move(letter));
        });
    }
};

/// Every message accounted for exactly once: each outcome completed once, the counters add
/// up to the outcomes, and each failure (only failures) went to the dead letters once, with
/// the send's error, diagnostics and attempts.
inline void check_accounted(const std::vector<Outcome>& outcomes,
                            const std::vector<std::string>& bodies, const DestinationStats& stats,
                            DeadLetters& dead) {
    REQUIRE(outcomes.size() == bodies.size());
    std::map<std::string, const Outcome*> failed_by_body;
    std::uint64_t delivered = 0;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        CHECK(outcomes[i].completions == 1);
        if (outcomes[i].ec)
            failed_by_body.emplace(bodies[i], &outcomes[i]);
        else
            ++delivered;
    }
    CHECK(stats.accepted == outcomes.size());
    CHECK(stats.delivered == delivered);
    CHECK(stats.failed == outcomes.size() - delivered);
    CHECK(stats.in_flight == 0);
    CHECK(stats.latency.count == delivered);
    std::lock_guard lock(dead.mutex);
    CHECK(dead.letters.size() == failed_by_body.size());
    for (const auto& letter : dead.letters) {
        auto it = failed_by_body.find(letter.message.body);
        REQUIRE(it != failed_by_body.end());
        CHECK(letter.error == it->second->ec);
        CHECK(letter.receipt.attempts == it->second->receipt.attempts);
        CHECK(letter.receipt.diagnostics.message == it->second->receipt.diagnostics.message);
        failed_by_body.erase(it);  // a second letter for the same message fails the REQUIRE
    }
}

inline Message text_message(std::string body) {
    Message m;
    m.body = std::move(body);
    return m;
}

}  // namespace outbox::test
