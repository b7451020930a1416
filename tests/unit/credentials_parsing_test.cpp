// Readers of what credentials endpoints and profile files contain.
#include "aws/credentials/credentials_parsing.hpp"
#include <outbox/error.hpp>
#include <outbox/sigv4.hpp>
#include "aws/profile_file.hpp"
#include "aws/xml_extract.hpp"

#include "catch.hpp"

using namespace outbox;
using namespace outbox::detail;
using namespace std::chrono;

namespace {

system_clock::time_point utc(std::string_view amz) {
    system_clock::time_point t;
    REQUIRE_FALSE(sigv4::parse_amz_date(amz, t));
    return t;
}

}  // namespace

TEST_CASE("ISO 8601 timestamps as AWS writes them") {
    system_clock::time_point t;
    REQUIRE(parse_iso8601("2026-11-22T12:34:56Z", t));
    CHECK(t == utc("20261122T123456Z"));
    REQUIRE(parse_iso8601("2026-11-22T12:34:56.123Z", t));
    CHECK(t == utc("20261122T123456Z"));
    REQUIRE(parse_iso8601("2026-11-22T14:34:56+02:00", t));
    CHECK(t == utc("20261122T123456Z"));
    REQUIRE(parse_iso8601("2026-11-22T10:04:56-02:30", t));
    CHECK(t == utc("20261122T123456Z"));
    // Found by fuzz_credentials_json once the library was instrumented: a far year overflowed
    // system_clock's nanoseconds. A provider's "never" is the year 2200; the distant past, 1970.
    REQUIRE(parse_iso8601("9999-12-31T23:59:59Z", t));
    CHECK(t == system_clock::time_point(sys_days(2200y / January / 1)));
    REQUIRE(parse_iso8601("6392-02-13t16:39:46z", t));
    CHECK(t == system_clock::time_point(sys_days(2200y / January / 1)));
    REQUIRE(parse_iso8601("0001-01-01T00:00:00Z", t));
    CHECK(t == system_clock::time_point(sys_days(1970y / January / 1)));
    for (const char* bad :
         {"", "2026-11-22", "2026-11-22T12:34:56", "2026-13-22T12:34:56Z", "2026-02-30T00:00:00Z",
          "2026-11-22T12:34:56.Z", "2026-11-22T12:34:56Zjunk", "2026/11/22T12:34:56Z"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_iso8601(bad, t));
    }
}

TEST_CASE("container and instance metadata JSON") {
    Credentials c;
    REQUIRE_FALSE(parse_credentials_json(
        R"({"Code":"Success","LastUpdated":"2026-11-22T10:00:00Z","Type":"AWS-HMAC",
        "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret/key+","Token":"tok==","Expiration":"2026-11-22T16:00:00Z"})",
        c));
    CHECK(c.access_key_id == "ASIAEXAMPLE");
    CHECK(c.secret_access_key == "secret/key+");
    CHECK(c.session_token == "tok==");
    REQUIRE(c.expiration);
    CHECK(*c.expiration == utc("20261122T160000Z"));

    CHECK(parse_credentials_json(R"({"Code":"Failure","Message":"no"})", c) ==
          Errc::credentials_endpoint_error);
    CHECK(parse_credentials_json(R"({"AccessKeyId":"A"})", c) ==
          Errc::invalid_credentials_response);
    CHECK(parse_credentials_json(R"({"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"soon"})",
                                 c) == Errc::invalid_credentials_response);
    CHECK(parse_credentials_json("<html>proxy error</html>", c) ==
          Errc::invalid_credentials_response);
    CHECK(parse_credentials_json("", c) == Errc::invalid_credentials_response);
}

TEST_CASE("STS AssumeRoleWithWebIdentity XML") {
    const std::string ok =
        R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>)";
    Credentials c;
    std::string message;
    REQUIRE_FALSE(parse_sts_credentials_xml(ok, c, message));
    CHECK(c.access_key_id == "ASgeIAIOSFODNN7EXAMPLE");
    CHECK(c.secret_access_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    CHECK(c.session_token == "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
    CHECK(*c.expiration == utc("20141024T230023Z"));

    const std::string error = R"(<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn&apos;t retrieve verification key</Message></Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>)";
    CHECK(parse_sts_credentials_xml(error, c, message) == Errc::credentials_endpoint_error);
    CHECK(message == "InvalidIdentityToken: Couldn't retrieve verification key");
    CHECK(parse_sts_credentials_xml("<Credentials><AccessKeyId>A</AccessKeyId></Credentials>", c,
                                    message) == Errc::invalid_credentials_response);
}

TEST_CASE("xml_element_text finds text elements and decodes entities") {
    CHECK(xml_element_text("<a><b>x &amp; y &lt;&gt; &#65;&#x42; &#x1F600;</b></a>", "b") ==
          "x & y <> AB \xf0\x9f\x98\x80");
    CHECK(xml_element_text("<Error><Code>C1</Code></Error><Code>C2</Code>", "Code") == "C1");
    CHECK(xml_element_text("<Code>C0</Code><Error><Code>C1</Code></Error>", "Code", "Error") ==
          "C1");
    CHECK(xml_element_text("<CodeX>no</CodeX><Code a=\"1\">yes</Code>", "Code") == "yes");
    CHECK(xml_element_text("<Empty/>", "Empty") == "");
    CHECK_FALSE(xml_element_text("<a>unterminated", "a"));
    CHECK_FALSE(xml_element_text("<a><b>nested</b></a>", "a"));
    CHECK_FALSE(xml_element_text("<a>&bogus;</a>", "a"));
    CHECK_FALSE(xml_element_text("<a>&#0;</a>", "a"));
    CHECK_FALSE(xml_element_text("<a>&#xD800;</a>", "a"));
    CHECK_FALSE(xml_element_text("", "a"));
}

TEST_CASE("profile files: sections, comments, nested properties, case of keys") {
    const auto s = parse_profile_file(
        "# comment\n[default]\naws_access_key_id = AKID\nAWS_Secret_Access_Key=SECRET \r\n; "
        "another\n"
        "[profile dev]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 4\nrole_arn = "
        "arn:aws:iam::1:role/r\n"
        "[ spaced ]\nk = v = w\nno equals sign\n");
    REQUIRE(s.size() == 3);
    CHECK(s.at("default").at("aws_access_key_id") == "AKID");
    CHECK(s.at("default").at("aws_secret_access_key") == "SECRET");
    CHECK(s.at("profile dev").at("region") == "eu-west-1");
    CHECK_FALSE(s.at("profile dev").contains("max_concurrent_requests"));
    CHECK(s.at("profile dev").at("role_arn") == "arn:aws:iam::1:role/r");
    CHECK(s.at("spaced").at("k") == "v = w");
    CHECK(parse_profile_file("key = before any section\n").empty());
}
