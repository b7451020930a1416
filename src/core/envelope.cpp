#include "core/base64.hpp"

#include <outbox/envelope.hpp>
#include <outbox/json_string.hpp>

#include <simdjson.h>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <cstdio>

namespace outbox {
namespace {

bool is_json_type(std::string_view content_type) {
    const auto semicolon = content_type.find(';');
    const std::string_view type = content_type.substr(0, semicolon);
    return type == "application/json" || type == "text/json" || type.ends_with("+json");
}

bool is_valid_json(std::string_view text) {
    static thread_local simdjson::dom::parser parser;
    const simdjson::padded_string padded(text);
    simdjson::dom::element ignored;
    return parser.parse(padded).get(ignored) == simdjson::SUCCESS;
}

void append_base64_string(std::string& out, std::string_view bytes) {
    out += '"';
    detail::append_base64(out, bytes);
    out += '"';
}

}  // namespace

std::string staged_payload_message(std::string_view url, std::chrono::seconds expires_in) {
    std::string out;
    out.reserve(url.size() + 80);
    out += R"({"status":"success","type":"s3_payload","url":)";
    append_json_string(out, url);
    out += R"(,"expires_in":)";
    append_json_number(out, expires_in.count());
    out += '}';
    return out;
}

std::string staged_payload_message(std::string_view url, std::chrono::seconds expires_in,
                                   std::string_view link) {
    std::string out = staged_payload_message(url, expires_in);
    if (link.empty()) return out;
    out.pop_back();  // the closing brace
    out += R"(,"link":)";
    append_json_string(out, link);
    out += '}';
    return out;
}

std::string extended_client_pointer(std::string_view bucket, std::string_view key) {
    std::string out;
    out.reserve(bucket.size() + key.size() + 96);
    out += R"(["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":)";
    append_json_string(out, bucket);
    out += R"(,"s3Key":)";
    append_json_string(out, key);
    out += "}]";
    return out;
}

std::string rfc3339_utc(std::chrono::system_clock::time_point when) {
    using namespace std::chrono;
    const auto day = floor<days>(when);
    const year_month_day ymd(day);
    const hh_mm_ss<milliseconds> t(duration_cast<milliseconds>(when - day));
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(t.hours().count()),
                  static_cast<int>(t.minutes().count()), static_cast<int>(t.seconds().count()),
                  static_cast<int>(t.subseconds().count()));
    return buf;
}

std::string cloudevents_structured(const CloudEventAttributes& a, std::string_view data) {
    std::string out;
    out.reserve(data.size() + 256);
    out += R"({"specversion":"1.0","id":)";
    if (a.id.empty()) {
        static thread_local boost::uuids::random_generator uuids;
        append_json_string(out, boost::uuids::to_string(uuids()));
    } else {
        append_json_string(out, a.id);
    }
    out += R"(,"source":)";
    append_json_string(out, a.source);
    out += R"(,"type":)";
    append_json_string(out, a.type);
    if (!a.subject.empty()) {
        out += R"(,"subject":)";
        append_json_string(out, a.subject);
    }
    out += R"(,"time":)";
    append_json_string(out,
                       a.time.empty() ? rfc3339_utc(std::chrono::system_clock::now()) : a.time);
    if (!a.datacontenttype.empty()) {
        out += R"(,"datacontenttype":)";
        append_json_string(out, a.datacontenttype);
    }
    if (is_json_type(a.datacontenttype) && is_valid_json(data)) {
        out += R"(,"data":)";
        out += data;  // valid JSON (and valid UTF-8), embedded as it is
    } else {
        out += R"(,"data_base64":)";
        append_base64_string(out, data);
    }
    out += '}';
    return out;
}

std::vector<std::pair<std::string, std::string>> cloudevents_kafka_headers(
    const CloudEventAttributes& a) {
    std::vector<std::pair<std::string, std::string>> h;
    h.reserve(7);
    h.emplace_back("ce_specversion", "1.0");
    if (a.id.empty()) {
        static thread_local boost::uuids::random_generator uuids;
        h.emplace_back("ce_id", boost::uuids::to_string(uuids()));
    } else {
        h.emplace_back("ce_id", a.id);
    }
    h.emplace_back("ce_source", a.source);
    h.emplace_back("ce_type", a.type);
    h.emplace_back("ce_time",
                   a.time.empty() ? rfc3339_utc(std::chrono::system_clock::now()) : a.time);
    if (!a.subject.empty()) h.emplace_back("ce_subject", a.subject);
    // The Kafka binding maps datacontenttype to the content-type header, not a ce_ one.
    if (!a.datacontenttype.empty()) h.emplace_back("content-type", a.datacontenttype);
    return h;
}

}  // namespace outbox
