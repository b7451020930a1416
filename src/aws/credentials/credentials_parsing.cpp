#include "aws/credentials/credentials_parsing.hpp"
#include <outbox/error.hpp>
#include "aws/xml_extract.hpp"
#include "core/clock_range.hpp"

#include <simdjson.h>

#include <charconv>

namespace outbox::detail {
namespace {

bool number(std::string_view s, std::size_t at, std::size_t len, int& out) {
    if (at + len > s.size()) return false;
    for (std::size_t i = at; i < at + len; ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    std::from_chars(s.data() + at, s.data() + at + len, out);
    return true;
}

}  // namespace

bool parse_iso8601(std::string_view s, std::chrono::system_clock::time_point& out) {
    using namespace std::chrono;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;  // GCC 12 -O3 cannot see they are set
    if (!number(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !number(s, 5, 2, mo) ||
        s[7] != '-' || !number(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') ||
        !number(s, 11, 2, h) || s[13] != ':' || !number(s, 14, 2, mi) || s[16] != ':' ||
        !number(s, 17, 2, sec))
        return false;
    std::size_t i = 19;
    if (i < s.size() && s[i] == '.') {
        ++i;
        const std::size_t digits = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        if (i == digits) return false;
    }
    int offset_minutes = 0;
    if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
        ++i;
    } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
        int oh = 0, om = 0;
        if (!number(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
            !number(s, i + 4, 2, om) || oh > 23 || om > 59)
            return false;
        offset_minutes = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
        i += 6;
    } else {
        return false;
    }
    if (i != s.size()) return false;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                             day{static_cast<unsigned>(d)}};
    if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return false;
    // Clamped, not refused (core/clock_range.hpp): a provider's "never" is often 9999-12-31.
    if (y >= latest_clock_year) {
        out = clock_range_end;
        return true;
    }
    if (y < earliest_clock_year) {
        out = system_clock::time_point{};  // 1970: long expired
        return true;
    }
    out = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} - minutes{offset_minutes};
    return true;
}

boost::system::error_code parse_credentials_json(std::string_view json, Credentials& out) {
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(json);
    simdjson::dom::object obj;
    if (parser.parse(padded).get_object().get(obj) != simdjson::SUCCESS)
        return Errc::invalid_credentials_response;
    std::string_view code;
    if (obj["Code"].get_string().get(code) == simdjson::SUCCESS && code != "Success")
        return Errc::credentials_endpoint_error;
    std::string_view key, secret, token, expiration;
    if (obj["AccessKeyId"].get_string().get(key) != simdjson::SUCCESS ||
        obj["SecretAccessKey"].get_string().get(secret) != simdjson::SUCCESS || key.empty() ||
        secret.empty())
        return Errc::invalid_credentials_response;
    Credentials c;
    c.access_key_id = key;
    c.secret_access_key = secret;
    if (obj["Token"].get_string().get(token) == simdjson::SUCCESS) c.session_token = token;
    if (obj["Expiration"].get_string().get(expiration) == simdjson::SUCCESS) {
        std::chrono::system_clock::time_point t;
        if (!parse_iso8601(expiration, t)) return Errc::invalid_credentials_response;
        c.expiration = t;
    }
    out = std::move(c);
    return {};
}

boost::system::error_code parse_sts_credentials_xml(std::string_view xml, Credentials& out,
                                                    std::string& error_message) {
    if (auto code = xml_element_text(xml, "Code", "Error")) {
        error_message = *code + ": " + xml_element_text(xml, "Message", "Error").value_or("");
        return Errc::credentials_endpoint_error;
    }
    auto key = xml_element_text(xml, "AccessKeyId", "Credentials");
    auto secret = xml_element_text(xml, "SecretAccessKey", "Credentials");
    auto token = xml_element_text(xml, "SessionToken", "Credentials");
    auto expiration = xml_element_text(xml, "Expiration", "Credentials");
    if (!key || !secret || !token || !expiration || key->empty() || secret->empty())
        return Errc::invalid_credentials_response;
    std::chrono::system_clock::time_point t;
    if (!parse_iso8601(*expiration, t)) return Errc::invalid_credentials_response;
    out = Credentials{std::move(*key), std::move(*secret), std::move(*token), t};
    return {};
}

}  // namespace outbox::detail
