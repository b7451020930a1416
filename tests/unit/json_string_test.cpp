#include <outbox/json_string.hpp>

#include "catch.hpp"

#include <simdjson.h>

#include <string>
#include <vector>

using outbox::append_json_string;

namespace {

// Parses `json` (a JSON string literal) back with simdjson.
std::string round_trip(const std::string& json) {
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(json);
    std::string_view s;
    REQUIRE(parser.parse(padded).get_string().get(s) == simdjson::SUCCESS);
    return std::string(s);
}

}  // namespace

TEST_CASE("JSON strings escape quotes, backslashes and control characters") {
    std::string out;
    CHECK(append_json_string(out, std::string("a\"b\\c\n\r\t\b\f\x01\x1f\0z", 14)));
    CHECK(out == R"("a\"b\\c\n\r\t\b\f\u0001\u001f\u0000z")");
    CHECK(round_trip(out) == std::string("a\"b\\c\n\r\t\b\f\x01\x1f\0z", 14));
}

TEST_CASE("valid UTF-8 passes through; invalid bytes become U+FFFD") {
    std::string out;
    CHECK(append_json_string(out, "h\xc3\xa9 \xe1\x88\xb4 \xf0\x9f\x98\x80"));
    CHECK(round_trip(out) == "h\xc3\xa9 \xe1\x88\xb4 \xf0\x9f\x98\x80");
    for (const char* bad :
         {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe1\x88", "\x80"}) {
        out.clear();
        CAPTURE(bad);
        CHECK_FALSE(append_json_string(out, bad));
        CHECK(round_trip(out).find("\xef\xbf\xbd") != std::string::npos);
    }
}

TEST_CASE("JSON strings: a byte to escape is found at any offset of a long run") {
    // The scanner goes sixteen, then eight, then one byte at a time. A one-byte special put at
    // every offset of 70 plain bytes makes 71 (64 + 7: found by the sixteen- or the one-byte
    // path), of 75 makes 76 (64 + 8 + 4: by each of the three).
    const std::string nul(1, '\0');
    for (const std::size_t length : {std::size_t(70), std::size_t(75)})
        for (const std::string& special :
             std::vector<std::string>{"\"", "\\", "\n", nul, "\x1f", "\xc3\xa9", "\xff"}) {
            const std::string plain(length, 'x');
            for (std::size_t at = 0; at <= plain.size(); ++at) {
                std::string text = plain;
                text.insert(at, special);
                std::string out;
                const bool valid = append_json_string(out, text);
                CAPTURE(length, special, at);
                CHECK(valid == (special != "\xff"));
                const std::string escaped = special == "\""     ? "\\\""
                                            : special == "\\"   ? "\\\\"
                                            : special == "\n"   ? "\\n"
                                            : special == nul    ? "\\u0000"
                                            : special == "\x1f" ? "\\u001f"
                                            : special == "\xff" ? "\\ufffd"
                                                                : special;
                CHECK(out == "\"" + plain.substr(0, at) + escaped + plain.substr(at) + "\"");
            }
        }
}
