// Amazon MSK's IAM token without a network: its pre-signed URL taken apart, and one token
// compared with the one AWS's aws-msk-iam-sasl-signer-python algorithm makes on botocore
// (computed by tests/integration/sigv4_botocore_crosscheck.py's reference_msk_token; the
// botocore tier of scripts/dev test compares hundreds more).
#include "catch.hpp"

#include <outbox/error.hpp>
#include <outbox/msk_iam_token.hpp>
#include <outbox/sigv4.hpp>

#include <openssl/evp.h>

#include <string>

namespace {

std::string base64url_decode(std::string text) {
    for (char& c : text) {
        if (c == '-') c = '+';
        if (c == '_') c = '/';
    }
    while (text.size() % 4 != 0) text.push_back('=');
    std::string out(text.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
    REQUIRE(n >= 0);
    out.resize(static_cast<std::size_t>(n));
    while (!out.empty() && out.back() == '\0') out.pop_back();  // the padding's bytes
    return out;
}

std::chrono::system_clock::time_point at(const char* amz_date) {
    std::chrono::system_clock::time_point t;
    REQUIRE_FALSE(outbox::sigv4::parse_amz_date(amz_date, t));
    return t;
}

}  // namespace

TEST_CASE("the token is the pre-signed kafka-cluster Connect URL, base64url without padding") {
    const outbox::Credentials credentials{
        .access_key_id = "AKIDEXAMPLE",
        .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
    outbox::MskIamToken token;
    REQUIRE_FALSE(
        outbox::make_msk_iam_token("eu-west-1", credentials, at("20261122T235959Z"), token));
    for (char c : token.token)
        CHECK(std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                  .find(c) != std::string_view::npos);
    const std::string url = base64url_decode(token.token);
    const std::string prefix =
        "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20261122%2Feu-west-1%2Fkafka-cluster%2Faws4_request"
        "&X-Amz-Date=20261122T235959Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=";
    REQUIRE(url.starts_with(prefix));
    const std::string rest = url.substr(prefix.size());
    CHECK(rest.size() == 64 + std::string("&User-Agent=outbox-msk-iam").size());
    CHECK(rest.ends_with("&User-Agent=outbox-msk-iam"));
    // 2026-11-22T23:59:59Z + 900 s, in milliseconds.
    CHECK(token.expires_at_ms == (1795392000LL - 1 + 900) * 1000);
}

TEST_CASE("with a session token: signed, after SignedHeaders, as AWS's signers place it") {
    const outbox::Credentials credentials{.access_key_id = "ASIAEXAMPLE",
                                          .secret_access_key = "secret/with+chars=",
                                          .session_token = "IQoJ/session+token=="};
    outbox::MskIamToken token;
    REQUIRE_FALSE(outbox::make_msk_iam_token("us-east-1", credentials, at("20261122T235959Z"),
                                             token, "aws-msk-iam-sasl-signer-python/1.0.1"));
    // reference_msk_token() of sigv4_botocore_crosscheck.py for this case (botocore 1.29).
    CHECK(token.token ==
          "aHR0cHM6Ly9rYWZrYS51cy1lYXN0LTEuYW1hem9uYXdzLmNvbS8_QWN0aW9uPWthZmthLWNsdXN0ZXIlM0FDb25u"
          "ZWN0JlgtQW16LUFsZ29yaXRobT1BV1M0LUhNQUMtU0hBMjU2JlgtQW16LUNyZWRlbnRpYWw9QVNJQUVYQU1QTEUl"
          "MkYyMDI2MTEyMiUyRnVzLWVhc3QtMSUyRmthZmthLWNsdXN0ZXIlMkZhd3M0X3JlcXVlc3QmWC1BbXotRGF0ZT0y"
          "MDI2MTEyMlQyMzU5NTlaJlgtQW16LUV4cGlyZXM9OTAwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCZYLUFtei1T"
          "ZWN1cml0eS1Ub2tlbj1JUW9KJTJGc2Vzc2lvbiUyQnRva2VuJTNEJTNEJlgtQW16LVNpZ25hdHVyZT01YWI4YjA1"
          "OGU1MGU0OWUzNDY1NGQwYzJkYjBhOTg1ZDgxNzBiMWNiODM4ZjExYTNjZDc4MGIzYTYzZmY5MGNiJlVzZXItQWdl"
          "bnQ9YXdzLW1zay1pYW0tc2FzbC1zaWduZXItcHl0aG9uJTJGMS4wLjE");
    CHECK(token.expires_at_ms == 1795392899000);
}

TEST_CASE("a region that is no region, and missing credentials, are refused") {
    const outbox::Credentials credentials{.access_key_id = "AKID", .secret_access_key = "s"};
    outbox::MskIamToken token;
    const auto now = at("20261122T235959Z");
    for (const char* region : {"", "US-EAST-1", "us-east-1.evil.com/", "eu west"})
        CHECK(outbox::make_msk_iam_token(region, credentials, now, token) ==
              outbox::Errc::invalid_argument);
    CHECK(outbox::make_msk_iam_token("us-east-1", outbox::Credentials{}, now, token) ==
          outbox::Errc::missing_credentials);
    CHECK(token.token.empty());
}
