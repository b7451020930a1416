// Signer behaviour beyond the vectors: key cache, clock reads, expiry bounds, tokens,
// hosts with ports, excluded headers, threads.
#include <outbox/sigv4.hpp>

#include "catch.hpp"

#include <thread>

using namespace outbox;
using namespace std::chrono;

namespace {

const Credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", {}, {}};

system_clock::time_point at(std::string_view amz) {
    system_clock::time_point t;
    REQUIRE_FALSE(sigv4::parse_amz_date(amz, t));
    return t;
}

sigv4::SigningTrace sign(const sigv4::Signer& s, const sigv4::Request& r,
                         system_clock::time_point t, const Credentials& c = creds) {
    sigv4::HeaderSignature sig;
    sigv4::SigningTrace trace;
    REQUIRE_FALSE(s.sign_headers(r, c, t, sig, &trace));
    return trace;
}

}  // namespace

TEST_CASE("timestamp and scope date come from one time point, even at 23:59:59.999") {
    const sigv4::Signer s({.region = "us-east-1", .service = "sqs"});
    const auto t = at("20151231T235959Z") + milliseconds(999);
    sigv4::HeaderSignature sig;
    REQUIRE_FALSE(s.sign_headers({.host = "sqs.us-east-1.amazonaws.com"}, creds, t, sig));
    CHECK(sig.amz_date == "20151231T235959Z");
    CHECK(sig.authorization.find("Credential=AKIDEXAMPLE/20151231/us-east-1/sqs/aws4_request") !=
          std::string::npos);
}

TEST_CASE("the signing key changes with the date and the secret (cache keyed on both)") {
    const sigv4::Signer s({.region = "us-east-1", .service = "service"});
    const sigv4::Request r{.host = "example.amazonaws.com"};
    sigv4::HeaderSignature a, b, c, d;
    REQUIRE_FALSE(s.sign_headers(r, creds, at("20150830T123600Z"), a));
    REQUIRE_FALSE(s.sign_headers(r, creds, at("20150831T123600Z"), b));
    Credentials other = creds;
    other.secret_access_key = "another-secret";
    REQUIRE_FALSE(s.sign_headers(r, other, at("20150830T123600Z"), c));
    REQUIRE_FALSE(s.sign_headers(r, creds, at("20150830T123600Z"), d));
    // get-vanilla, signed fresh and then from the cache.
    CHECK(a.signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK(d.signature == a.signature);
    CHECK(b.signature != a.signature);
    CHECK(c.signature != a.signature);
    // A fresh signer (cold cache) agrees with the cached result for the other secret.
    const sigv4::Signer fresh({.region = "us-east-1", .service = "service"});
    sigv4::HeaderSignature e;
    REQUIRE_FALSE(fresh.sign_headers(r, other, at("20150830T123600Z"), e));
    CHECK(e.signature == c.signature);
}

TEST_CASE("pre-signed expiry must be 1..604800 seconds") {
    const sigv4::Signer s(
        {.region = "us-east-1", .service = "s3", .path_rule = sigv4::PathRule::s3});
    sigv4::PresignedQuery q;
    const sigv4::Request r{.host = "b.s3.amazonaws.com", .path = "/k"};
    CHECK(s.presign(r, creds, at("20130524T000000Z"), seconds(0), q) == Errc::invalid_expiry);
    CHECK(s.presign(r, creds, at("20130524T000000Z"), seconds(604801), q) == Errc::invalid_expiry);
    CHECK(s.presign(r, creds, at("20130524T000000Z"), seconds(-5), q) == Errc::invalid_expiry);
    CHECK_FALSE(s.presign(r, creds, at("20130524T000000Z"), seconds(1), q));
    CHECK_FALSE(s.presign(r, creds, at("20130524T000000Z"), seconds(604800), q));
    CHECK(q.query.find("X-Amz-Expires=604800") != std::string::npos);
}

TEST_CASE("missing credentials are an error, not a request signed with nothing") {
    const sigv4::Signer s({.region = "us-east-1", .service = "sqs"});
    sigv4::HeaderSignature sig;
    CHECK(s.sign_headers({.host = "h"}, Credentials{}, system_clock::now(), sig) ==
          Errc::missing_credentials);
    sigv4::PresignedQuery q;
    CHECK(s.presign({.host = "h"}, Credentials{"AK", "", {}, {}}, system_clock::now(), seconds(60),
                    q) == Errc::missing_credentials);
}

TEST_CASE("a signer needs a region and a service") {
    CHECK_THROWS_AS(sigv4::Signer({.region = "", .service = "sqs"}), std::invalid_argument);
    CHECK_THROWS_AS(sigv4::Signer({.region = "eu-west-1", .service = ""}), std::invalid_argument);
}

TEST_CASE("S3 header signing sends and signs x-amz-content-sha256; the caller's copy is replaced") {
    const sigv4::Signer s({.region = "us-east-1",
                           .service = "s3",
                           .path_rule = sigv4::PathRule::s3,
                           .send_content_sha256 = true});
    const sigv4::Header headers[] = {{"X-Amz-Content-SHA256", "stale"},
                                     {"X-Amz-Date", "19990101T000000Z"}};
    const auto trace = sign(s,
                            {.method = "PUT",
                             .host = "localhost:9000",
                             .path = "/b/k",
                             .headers = headers,
                             .payload_hash = "UNSIGNED-PAYLOAD"},
                            at("20130524T000000Z"));
    CHECK(trace.canonical_request ==
          "PUT\n/b/k\n\nhost:localhost:9000\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
          "x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD");
}

TEST_CASE("headers that proxies rewrite are not signed") {
    const sigv4::Signer s({.region = "us-east-1", .service = "sqs"});
    const sigv4::Header headers[] = {{"User-Agent", "x"},
                                     {"Expect", "100-continue"},
                                     {"X-Amzn-Trace-Id", "t"},
                                     {"Connection", "keep-alive"},
                                     {"Transfer-Encoding", "chunked"},
                                     {"Content-Type", "application/x-amz-json-1.0"}};
    const auto trace =
        sign(s, {.method = "POST", .host = "sqs.us-east-1.amazonaws.com", .headers = headers},
             at("20150830T123600Z"));
    CHECK(trace.canonical_request.find("\n\ncontent-type;host;x-amz-date\n") != std::string::npos);
}

TEST_CASE("session token: signed in header mode, in the canonical query when pre-signing") {
    Credentials temp = creds;
    temp.session_token = "tok+en/==";
    const sigv4::Signer s(
        {.region = "us-east-1", .service = "s3", .path_rule = sigv4::PathRule::s3});
    const auto trace =
        sign(s, {.host = "b.s3.amazonaws.com", .path = "/k"}, at("20130524T000000Z"), temp);
    CHECK(trace.canonical_request.find("x-amz-security-token:tok+en/==\n") != std::string::npos);

    sigv4::PresignedQuery q;
    sigv4::SigningTrace qt;
    REQUIRE_FALSE(s.presign({.host = "b.s3.amazonaws.com", .path = "/k"}, temp,
                            at("20130524T000000Z"), seconds(600), q, &qt));
    CHECK(qt.canonical_request.find(
              "X-Amz-Security-Token=tok%2Ben%2F%3D%3D&X-Amz-SignedHeaders=host\n") !=
          std::string::npos);
    CHECK(q.query.ends_with("&X-Amz-Signature=" + q.signature));
    CHECK(qt.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
}

TEST_CASE("amz dates parse strictly") {
    system_clock::time_point t;
    CHECK_FALSE(sigv4::parse_amz_date("20150830T123600Z", t));
    CHECK(sigv4::format_amz_date(t) == "20150830T123600Z");
    for (const char* bad :
         {"", "20150830T123600", "2015-08-30T12:36:00Z", "20150230T123600Z", "20150830T243600Z",
          "20150830T126000Z", "2015083OT123600Z", "20150830t123600z", "+0150830T123600Z",
          // Years system_clock's 64-bit nanoseconds cannot hold, or hold too near the edge.
          "99991231T235959Z", "19691231T235959Z", "22010101T000000Z"}) {
        CAPTURE(bad);
        CHECK(sigv4::parse_amz_date(bad, t) == Errc::invalid_timestamp);
    }
}

TEST_CASE("one signer used from several threads gives the same signatures") {
    const sigv4::Signer s({.region = "us-east-1", .service = "service"});
    const sigv4::Request r{.host = "example.amazonaws.com"};
    std::vector<std::thread> threads;
    std::atomic<int> mismatches{0};
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&, i] {
            Credentials c = creds;
            if (i % 2) c.secret_access_key += "x";  // two secrets fight over the cache
            sigv4::HeaderSignature sig, first;
            (void)s.sign_headers(r, c, at("20150830T123600Z"), first);
            for (int k = 0; k < 2000; ++k) {
                (void)s.sign_headers(r, c, at(k % 2 ? "20150830T123600Z" : "20150831T000000Z"),
                                     sig);
                if (k % 2 && sig.signature != first.signature) ++mismatches;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(mismatches == 0);
}
