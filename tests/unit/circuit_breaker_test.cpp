// A target's circuit breaker without a network or a clock: detail::CircuitBreaker told
// made-up times and outcomes, its admissions and reported health changes checked.
#include "catch.hpp"

#include "core/circuit_breaker.hpp"
#include "core/token_bucket.hpp"

#include <outbox/error.hpp>

#include <boost/asio/error.hpp>

#include <vector>

using namespace std::chrono_literals;
using outbox::Errc;
using outbox::TargetHealth;
using Breaker = outbox::detail::CircuitBreaker;
using Admission = Breaker::Admission;

namespace {

outbox::CircuitBreakerPolicy policy(std::uint32_t failures_to_open = 4) {
    outbox::CircuitBreakerPolicy p;
    p.failures_to_open = failures_to_open;
    p.open_for = 10s;
    p.max_open_for = 35s;
    p.disable_after = 60s;
    return p;
}

const Breaker::time_point start = Breaker::time_point{} + 1000h;

}  // namespace

TEST_CASE("the breaker reports degraded at half the run, opens at the run, and refuses") {
    Breaker b(policy(4));
    std::vector<std::optional<TargetHealth>> reported;
    for (int i = 0; i < 4; ++i) {
        REQUIRE(b.admit(start) == Admission::send);
        reported.push_back(b.failed(start, false));
    }
    CHECK(reported == std::vector<std::optional<TargetHealth>>{std::nullopt, TargetHealth::degraded,
                                                               std::nullopt, TargetHealth::open});
    CHECK(b.open());
    CHECK(b.consecutive_failures() == 4);
    CHECK(b.next_probe_at() == start + 10s);
    CHECK(b.admit(start + 9999ms) == Admission::refuse);
}

TEST_CASE("a success in the run resets it; degraded is reported once, healthy after it") {
    Breaker b(policy(4));
    CHECK_FALSE(b.failed(start, false));
    CHECK(b.succeeded(false) == std::nullopt);  // never reported: nothing to recover from
    CHECK(b.consecutive_failures() == 0);
    CHECK_FALSE(b.failed(start, false));
    CHECK(b.failed(start, false) == TargetHealth::degraded);
    CHECK(b.succeeded(false) == TargetHealth::healthy);
    CHECK_FALSE(b.failed(start, false));
    CHECK(b.failed(start, false) == TargetHealth::degraded);
    CHECK_FALSE(b.failed(start, false));
    CHECK(b.failed(start, false) == TargetHealth::open);
}

TEST_CASE("after its wait the breaker lets exactly one probe through; its success closes it") {
    Breaker b(policy(2));
    b.failed(start, false);
    REQUIRE(b.failed(start, false) == TargetHealth::open);
    CHECK(b.admit(start + 10s) == Admission::probe);
    CHECK(b.admit(start + 10s) == Admission::refuse);  // one probe at a time
    CHECK(b.admit(start + 20s) == Admission::refuse);
    CHECK(b.succeeded(true) == TargetHealth::healthy);
    CHECK_FALSE(b.open());
    CHECK(b.admit(start + 20s) == Admission::send);
}

TEST_CASE("each failed probe doubles the wait up to max_open_for; disabled after disable_after") {
    Breaker b(policy(1));  // no degraded step when one failure opens it
    REQUIRE(b.failed(start, false) == TargetHealth::open);
    auto now = start;
    std::vector<std::chrono::seconds> waits;
    std::vector<std::optional<TargetHealth>> reported;
    for (int i = 0; i < 5; ++i) {
        now = b.next_probe_at();
        REQUIRE(b.admit(now - 1ms) == Admission::refuse);
        REQUIRE(b.admit(now) == Admission::probe);
        reported.push_back(b.failed(now, true));
        waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(b.next_probe_at() - now));
    }
    // probes at 10, 30, 65, 100, 135 s after opening: the wait 20, 35 (capped), 35, ...
    CHECK(waits == std::vector<std::chrono::seconds>{20s, 35s, 35s, 35s, 35s});
    CHECK(reported == std::vector<std::optional<TargetHealth>>{std::nullopt, std::nullopt,
                                                               TargetHealth::disabled, std::nullopt,
                                                               std::nullopt});
    CHECK(b.health() == TargetHealth::disabled);
    REQUIRE(b.admit(b.next_probe_at()) == Admission::probe);
    CHECK(b.succeeded(true) == TargetHealth::healthy);
    // A new run starts from open_for again.
    REQUIRE(b.failed(now, false) == TargetHealth::open);
    CHECK(b.next_probe_at() == now + 10s);
}

TEST_CASE("failures of messages sent before it opened neither move the probe nor reopen it") {
    Breaker b(policy(2));
    b.failed(start, false);
    REQUIRE(b.failed(start, false) == TargetHealth::open);
    CHECK_FALSE(b.failed(start + 5s, false));
    CHECK(b.next_probe_at() == start + 10s);
    CHECK(b.consecutive_failures() == 3);
    // A late success of one of them shows the target works: closed at once.
    CHECK(b.succeeded(false) == TargetHealth::healthy);
    CHECK(b.admit(start + 6s) == Admission::send);
}

TEST_CASE("a probe that ends without a verdict frees the place for the next one") {
    Breaker b(policy(1));
    REQUIRE(b.failed(start, false) == TargetHealth::open);
    REQUIRE(b.admit(start + 10s) == Admission::probe);
    b.ended_without_verdict(true);  // say, refused as invalid by the destination
    CHECK(b.admit(start + 10s) == Admission::probe);
    CHECK(b.open());
}

TEST_CASE("a probe that fails after an older message closed the breaker frees its place") {
    Breaker b(policy(2));
    b.failed(start, false);
    REQUIRE(b.failed(start, false) == TargetHealth::open);
    REQUIRE(b.admit(start + 10s) == Admission::probe);
    CHECK(b.succeeded(false) == TargetHealth::healthy);  // sent before it opened, delivered
    // Then the probe comes back failed: the first of a new run (half of two: degraded).
    CHECK(b.failed(start + 11s, true) == TargetHealth::degraded);
    // Two more failures open it again; after the wait a probe goes, as the first time.
    CHECK(b.failed(start + 12s, false) == TargetHealth::open);
    CHECK(b.admit(start + 12s + 9s) == Admission::refuse);
    CHECK(b.admit(start + 12s + 10s) == Admission::probe);
}

TEST_CASE("failures_to_open 0 turns the breaker off; failures are still counted") {
    Breaker b(policy(0));
    for (int i = 0; i < 100; ++i) CHECK_FALSE(b.failed(start, false));
    CHECK(b.admit(start) == Admission::send);
    CHECK(b.consecutive_failures() == 100);
    CHECK(b.health() == TargetHealth::healthy);
}

TEST_CASE("only failures that say something about the target count") {
    using outbox::detail::counts_against_target;
    for (Errc e : {Errc::service_unavailable, Errc::throttled, Errc::timeout, Errc::outcome_unknown,
                   Errc::service_error, Errc::authentication_failed, Errc::tls_error,
                   Errc::topic_not_found, Errc::credentials_not_found, Errc::checksum_mismatch})
        CHECK(counts_against_target(e));
    CHECK(counts_against_target(boost::asio::error::connection_refused));
    for (Errc e :
         {Errc::invalid_message, Errc::payload_too_large, Errc::invalid_argument, Errc::no_route,
          Errc::target_unavailable, Errc::target_busy, Errc::close_timeout, Errc::store_full})
        CHECK_FALSE(counts_against_target(e));
    CHECK_FALSE(counts_against_target(boost::asio::error::operation_aborted));
    CHECK_FALSE(counts_against_target({}));
    outbox::Diagnostics blamed_on_the_sender;
    blamed_on_the_sender.sender_fault = true;  // a batch entry the service refused
    CHECK_FALSE(counts_against_target(Errc::service_error, blamed_on_the_sender));
    CHECK(outbox::is_retryable(Errc::target_unavailable));
    CHECK(outbox::is_retryable(Errc::target_busy));
    CHECK(std::string(outbox::to_string(TargetHealth::disabled)) == "disabled");
}

TEST_CASE("a target's token bucket: a burst at once, then the rate") {
    outbox::detail::TokenBucket bucket(2.0, 3.0, start);  // 2 a second, 3 at once
    int taken = 0;
    for (int i = 0; i < 10; ++i) taken += bucket.take(start) ? 1 : 0;
    CHECK(taken == 3);
    CHECK_FALSE(bucket.take(start + 499ms));  // 0.998 of a token back
    CHECK(bucket.take(start + 500ms));
    CHECK_FALSE(bucket.take(start + 500ms));
    // Ten idle seconds refill to the burst, no more.
    taken = 0;
    for (int i = 0; i < 10; ++i) taken += bucket.take(start + 10500ms) ? 1 : 0;
    CHECK(taken == 3);
}
