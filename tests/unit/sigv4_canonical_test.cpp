// The canonicalisation rules of RULES.md, one by one.
#include "aws/sigv4/sigv4_canonical.hpp"

#include "catch.hpp"

using namespace outbox::detail::sigv4;
using outbox::sigv4::PathRule;

namespace {

std::string uri(std::string_view path, PathRule rule) {
    std::string out;
    append_canonical_uri(out, path, rule);
    return out;
}

std::string query(std::string_view q) {
    std::string out;
    append_canonical_query(out, q);
    return out;
}

std::string value(std::string_view v) {
    std::string out;
    append_canonical_header_value(out, v);
    return out;
}

}  // namespace

TEST_CASE("non-S3 paths are normalised and encoded again (double encoding of wire paths)") {
    CHECK(uri("/a%2Fb", PathRule::normalize_and_encode) == "/a%252Fb");
    CHECK(uri("/example%20space/", PathRule::normalize_and_encode) == "/example%2520space/");
    CHECK(uri("/example1/example2/../..", PathRule::normalize_and_encode) == "/");
    CHECK(uri("/./example", PathRule::normalize_and_encode) == "/example");
    CHECK(uri("/./", PathRule::normalize_and_encode) == "/");
    CHECK(uri("//", PathRule::normalize_and_encode) == "/");
    CHECK(uri("//example//", PathRule::normalize_and_encode) == "/example/");
    CHECK(uri("/a/b/..", PathRule::normalize_and_encode) == "/a/");
    CHECK(uri("/a/.", PathRule::normalize_and_encode) == "/a/");
    CHECK(uri("", PathRule::normalize_and_encode) == "/");
    CHECK(uri("/../../a", PathRule::normalize_and_encode) == "/a");  // '..' above the root dropped
    CHECK(uri("/example/$delete", PathRule::normalize_and_encode) == "/example/%24delete");
}

TEST_CASE("S3 paths are the wire path: never normalised, never double-encoded") {
    CHECK(uri("/test%24file.text", PathRule::s3) == "/test%24file.text");
    CHECK(uri("/my-object//example//photo.user", PathRule::s3) ==
          "/my-object//example//photo.user");
    CHECK(uri("/a/./b/../c", PathRule::s3) == "/a/./b/../c");
    CHECK(uri("/a%2fb", PathRule::s3) == "/a%2Fb");  // hex made uppercase, not decoded
    CHECK(uri("/test$file.text", PathRule::s3) == "/test%24file.text");  // raw byte encoded once
    CHECK(uri("/100%", PathRule::s3) == "/100%25");  // a lone '%' cannot be on the wire
    CHECK(uri("/a b+c", PathRule::s3) == "/a%20b%2Bc");
    CHECK(uri("", PathRule::s3) == "/");
}

TEST_CASE("encoding keeps exactly A-Z a-z 0-9 - _ . ~ with uppercase hex over UTF-8 bytes") {
    std::string out;
    append_uri_encoded(out, "AZaz09-_.~ *+=&/\xe1\x88\xb4", false);
    CHECK(out == "AZaz09-_.~%20%2A%2B%3D%26%2F%E1%88%B4");
    out.clear();
    append_uri_encoded(out, "a/b", true);
    CHECK(out == "a/b");
}

TEST_CASE("canonical query: decoded, re-encoded, byte-order sorted, duplicates kept") {
    CHECK(query("") == "");
    CHECK(query("Param2=value2&Param1=value1") == "Param1=value1&Param2=value2");
    CHECK(query("Param1=value2&Param1=Value1") == "Param1=Value1&Param1=value2");
    CHECK(query("b=1&B=2&a=3") == "B=2&a=3&b=1");
    CHECK(query("lifecycle") == "lifecycle=");
    CHECK(query("Param1=") == "Param1=");
    CHECK(query("k=a%2Fb%3d") == "k=a%2Fb%3D");
    CHECK(query("k=a+b") == "k=a%2Bb");  // '+' is not a space
    CHECK(query("k=%E1%88%B4&j=\xe1\x88\xb4") == "j=%E1%88%B4&k=%E1%88%B4");
    CHECK(query("k=%zz") == "k=%25zz");  // malformed escape kept literally
    CHECK(query("&&a=1&") == "a=1");
    CHECK(query("x-amz-a=1&X-Amz-A=2") == "X-Amz-A=2&x-amz-a=1");
}

TEST_CASE("extra parameters are taken as already encoded, not decoded again") {
    std::string out;
    std::string credential, token;
    append_uri_encoded(credential, "AK/20150830/us-east-1/s3/aws4_request", false);
    append_uri_encoded(token, "a+b/c=%41", false);
    const EncodedQueryParam extra[] = {{"X-Amz-Credential", credential},
                                       {"X-Amz-Security-Token", token}};
    append_canonical_query(out, "z=1", extra);
    CHECK(out ==
          "X-Amz-Credential=AK%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&"
          "X-Amz-Security-Token=a%2Bb%2Fc%3D%2541&z=1");
}

TEST_CASE("header values: trimmed, whitespace runs collapsed, also inside quotes") {
    CHECK(value("  value1  ") == "value1");
    CHECK(value("\"a   b   c\"") == "\"a b c\"");
    CHECK(value("value1\n  value2\n     value3") == "value1 value2 value3");
    CHECK(value("\t") == "");
}

TEST_CASE("percent decoding is lenient") {
    std::string out;
    append_percent_decoded(out, "%41%4a%zz%4");
    CHECK(out == "AJ%zz%4");
}
