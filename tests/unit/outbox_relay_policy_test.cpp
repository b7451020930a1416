// The relay's decisions after a failed attempt (the retry schedule, the maximum age) with
// made-up clocks, and the encoding of stored attributes.
#include "outbox/event_codec.hpp"
#include "outbox/relay_policy.hpp"

#include "catch.hpp"

using namespace std::chrono_literals;
using outbox::EventOutcome;
using outbox::SystemTime;

namespace {
const std::vector<std::chrono::seconds> svix = {5s, 5min, 30min, 2h, 5h, 10h, 10h};
const SystemTime stored = SystemTime{} + std::chrono::hours(24 * 365 * 50);
}  // namespace

TEST_CASE("retryable failures follow the schedule; its last step repeats") {
    SystemTime now = stored;
    const std::vector<std::chrono::seconds> waits = {5s, 5min, 30min, 2h, 5h, 10h, 10h, 10h};
    for (std::uint32_t attempt = 1; attempt <= waits.size(); ++attempt) {
        CAPTURE(attempt);
        const auto o =
            outbox::detail::after_failure(7, attempt, true, "HTTP 503", stored, now, svix, 72h);
        REQUIRE(o.kind == EventOutcome::Kind::retry);
        CHECK(o.id == 7);
        CHECK(o.attempts == attempt);
        CHECK(o.next_attempt_at == now + waits[attempt - 1]);
        CHECK(o.error == "HTTP 503");
        now = o.next_attempt_at;
    }
}

TEST_CASE("past the maximum age, a retryable failure makes a dead letter that says why") {
    // 5 s + 5 min + 30 min + 2 h + 5 h + 10 h = 17 h 35 min 5 s after the first attempt; the
    // next step would end past 24 h.
    SystemTime now = stored;
    std::uint32_t attempt = 1;
    EventOutcome o;
    for (;; ++attempt) {
        o = outbox::detail::after_failure(1, attempt, true, "connection refused", stored, now, svix,
                                          24h);
        if (o.kind != EventOutcome::Kind::retry) break;
        now = o.next_attempt_at;
    }
    CHECK(attempt == 7);
    CHECK(o.kind == EventOutcome::Kind::dead);
    CHECK(o.error ==
          "still failing after its maximum age (24 h, 7 attempts); last error: "
          "connection refused");
}

TEST_CASE("a failure that is not retryable is a dead letter at once, with its own error") {
    const auto o =
        outbox::detail::after_failure(3, 1, false, "AccessDenied", stored, stored, svix, 72h);
    CHECK(o.kind == EventOutcome::Kind::dead);
    CHECK(o.error == "AccessDenied");
    CHECK(o.attempts == 1);
}

TEST_CASE("the relay retries its own access failures; the event's own are dead letters") {
    using outbox::Errc;
    for (Errc e :
         {Errc::credentials_not_found, Errc::credentials_expired, Errc::missing_credentials,
          Errc::authentication_failed, Errc::tls_error, Errc::throttled, Errc::timeout}) {
        INFO(make_error_code(e).message());
        CHECK(outbox::detail::relay_retries(e));
    }
    for (Errc e : {Errc::invalid_message, Errc::payload_too_large, Errc::service_error,
                   Errc::checksum_mismatch, Errc::topic_not_found}) {
        INFO(make_error_code(e).message());
        CHECK_FALSE(outbox::detail::relay_retries(e));
    }
    CHECK(outbox::detail::relay_retries(boost::asio::error::operation_aborted));
    CHECK(outbox::detail::relay_retries(boost::asio::error::connection_refused));
}

TEST_CASE("stored attributes round-trip; damaged bytes are refused, never read past") {
    std::vector<outbox::MessageAttribute> in = {{"kind", "String", "order"},
                                                {"amount", "Number", "12.5"},
                                                {"blob", "Binary", std::string("\0\xff", 2)}};
    std::string bytes;
    outbox::detail::encode_attributes(in, bytes);
    std::vector<outbox::MessageAttribute> out;
    REQUIRE(outbox::detail::decode_attributes(bytes, out));
    REQUIRE(out.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(out[i].name == in[i].name);
        CHECK(out[i].data_type == in[i].data_type);
        CHECK(out[i].value == in[i].value);
    }
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        std::vector<outbox::MessageAttribute> partial;
        CHECK_FALSE(
            outbox::detail::decode_attributes(std::string_view(bytes).substr(0, cut), partial));
    }
    std::vector<outbox::MessageAttribute> none;
    CHECK_FALSE(outbox::detail::decode_attributes(bytes + "x", none));         // trailing bytes
    CHECK_FALSE(outbox::detail::decode_attributes("\xff\xff\xff\xff", none));  // a huge count
}
