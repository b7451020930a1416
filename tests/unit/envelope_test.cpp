// Envelopes and the S3 helpers: exact formats, escaping, key templates, S3 error replies.
#include "catch.hpp"

#include <outbox/envelope.hpp>
#include <outbox/error.hpp>
#include "aws/s3/s3_protocol.hpp"

#include <simdjson.h>

TEST_CASE("the staged-payload message: four fields, this order, compact, the URL escaped") {
    CHECK(
        outbox::staged_payload_message(
            "https://b.s3.eu-west-1.amazonaws.com/k?X-Amz-Signature=ab&a=b",
            std::chrono::seconds(600)) ==
        R"({"status":"success","type":"s3_payload","url":"https://b.s3.eu-west-1.amazonaws.com/k?X-Amz-Signature=ab&a=b","expires_in":600})");
    CHECK(
        outbox::staged_payload_message("http://h/\"q\"\\\x01", std::chrono::seconds(5)) ==
        R"({"status":"success","type":"s3_payload","url":"http://h/\"q\"\\\u0001","expires_in":5})");
}

TEST_CASE("CloudEvents structured mode: data for JSON, data_base64 for anything else") {
    outbox::CloudEventAttributes a;
    a.id = "e-1";
    a.source = "urn:outbox";
    a.type = "com.example.order.created";
    a.subject = "order/1001";
    a.time = "2026-11-22T06:00:00Z";
    CHECK(
        outbox::cloudevents_structured(a, R"({"order":1001})") ==
        R"({"specversion":"1.0","id":"e-1","source":"urn:outbox","type":"com.example.order.created","subject":"order/1001","time":"2026-11-22T06:00:00Z","datacontenttype":"application/json","data":{"order":1001}})");
    const auto binary = outbox::cloudevents_structured(a, "not json \x01");
    CHECK(binary.find(R"("data_base64":"bm90IGpzb24gAQ==")") != std::string::npos);
    a.datacontenttype = "text/plain";
    CHECK(outbox::cloudevents_structured(a, "42").find(R"("data_base64":"NDI=")") !=
          std::string::npos);
    a.id.clear();
    a.time.clear();
    simdjson::dom::parser parser;
    simdjson::dom::object e = parser.parse(outbox::cloudevents_structured(a, "x"));
    CHECK(std::string_view(e["id"]).size() == 36);  // a UUID
    CHECK(std::string_view(e["time"]).ends_with("Z"));
}

TEST_CASE("RFC 3339 times in UTC") {
    using namespace std::chrono;
    CHECK(outbox::rfc3339_utc(sys_days(2026y / November / 22) + hours(6) + minutes(5) + seconds(7) +
                              milliseconds(89)) == "2026-11-22T06:05:07.089Z");
}

TEST_CASE("S3: bucket names, key templates, tagging") {
    namespace s3 = outbox::detail::s3;
    CHECK(s3::is_valid_bucket_name("outbox-staging"));
    CHECK(s3::is_valid_bucket_name("a.b.c"));
    for (const char* bad : {"ab", "Upper", "under_score", "-start", "end-", "a..b", ""})
        CHECK_FALSE(s3::is_valid_bucket_name(bad));
    using namespace std::chrono;
    const auto when = sys_days(2026y / January / 2) + hours(3);
    CHECK(s3::expand_key_template("{prefix}/{yyyy}/{mm}/{dd}/{hh}/{uuid}", "p", when, "U") ==
          "p/2026/01/02/03/U");
    CHECK(s3::expand_key_template("{prefix}/{uuid}", "", when, "U") == "U");  // no leading '/'
    CHECK(s3::expand_key_template("{prefix}//{uuid}.json", "a/", when, "U") == "a/U.json");
    CHECK(s3::tagging_header({{"a b", "c&d"}, {"e", "f=g"}}) == "a%20b=c%26d&e=f%3Dg");
}

TEST_CASE("S3: where a bucket's objects are addressed") {
    namespace s3 = outbox::detail::s3;
    s3::BucketAddress a;
    REQUIRE_FALSE(s3::bucket_address("staging", "eu-west-1", "", false, a));
    CHECK(a.origin.host == "staging.s3.eu-west-1.amazonaws.com");
    CHECK(a.origin.tls);
    CHECK(a.path_prefix == "/");
    REQUIRE_FALSE(s3::bucket_address("my.bucket", "eu-west-1", "", false, a));
    CHECK(a.origin.host == "s3.eu-west-1.amazonaws.com");
    CHECK(a.path_prefix == "/my.bucket/");
    REQUIRE_FALSE(s3::bucket_address("staging", "eu-west-1", "", true, a));
    CHECK(a.path_prefix == "/staging/");
    REQUIRE_FALSE(s3::bucket_address("staging", "", "http://127.0.0.1:4568/base/", false, a));
    CHECK_FALSE(a.origin.tls);
    CHECK(a.origin.host_header() == "127.0.0.1:4568");
    CHECK(a.path_prefix == "/base/staging/");
    CHECK(s3::bucket_address("staging", "", "http://127.0.0.1:4568/?x=1", false, a) ==
          outbox::Errc::invalid_url);
    CHECK(s3::bucket_address("staging", "", "ftp://host", false, a) == outbox::Errc::invalid_url);
}

TEST_CASE("S3 error replies") {
    namespace s3 = outbox::detail::s3;
    outbox::HttpResponse res;
    res.status = 403;
    res.headers = {{"x-amz-request-id", "R1"}};
    res.body =
        R"(<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied &amp; more</Message><RequestId>R2</RequestId></Error>)";
    outbox::Diagnostics d;
    CHECK(s3::parse_error_response(res, d) == outbox::Errc::service_error);
    CHECK(d.code == "AccessDenied");
    CHECK(d.message == "Access Denied & more");
    CHECK(d.service_message == "Access Denied & more");
    CHECK(d.request_id == "R1");
    res.status = 503;
    res.body = "<Error><Code>SlowDown</Code></Error>";
    d = {};
    CHECK(s3::parse_error_response(res, d) == outbox::Errc::throttled);
    res.status = 500;
    res.body.clear();
    d = {};
    CHECK(s3::parse_error_response(res, d) == outbox::Errc::service_unavailable);
    CHECK(d.code == "HTTP 500");
}

TEST_CASE("the SQS Extended Client Library's pointer, exactly as the library writes it",
          "[envelope]") {
    CHECK(outbox::extended_client_pointer("orders-payloads", "outbox/2026/12/03/abc") ==
          R"(["software.amazon.payloadoffloading.PayloadS3Pointer",)"
          R"({"s3BucketName":"orders-payloads","s3Key":"outbox/2026/12/03/abc"}])");
    // Keys may hold any characters: they are JSON-escaped, not altered.
    CHECK(outbox::extended_client_pointer("b", "a \"quoted\"\\key\n") ==
          R"(["software.amazon.payloadoffloading.PayloadS3Pointer",)"
          R"({"s3BucketName":"b","s3Key":"a \"quoted\"\\key\n"}])");
    CHECK(outbox::extended_payload_size_attribute == "ExtendedPayloadSize");
}
