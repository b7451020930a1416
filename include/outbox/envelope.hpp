// What a queue or topic carries: the raw body, the documented staged-payload message, or a
// CloudEvents 1.0 structured-mode JSON event.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox {

enum class Envelope {
    raw,          // the body as given
    cloudevents,  // CloudEvents 1.0, structured JSON
    /// CloudEvents 1.0 binary mode (Kafka only): the body as is, the attributes in ce_*
    /// headers.
    cloudevents_binary,
};

/// {"status":"success","type":"s3_payload","url":"…","expires_in":600}: these four fields,
/// this order, compact, the URL escaped as a JSON string.
std::string staged_payload_message(std::string_view url, std::chrono::seconds expires_in);

struct CloudEventAttributes {
    std::string id{};      // required; unique per source (empty: a random UUID)
    std::string source{};  // required: a URI reference naming the producer
    std::string type{};    // required: "com.example.order.created"
    std::string subject{};
    /// RFC 3339; empty: the current time.
    std::string time{};
    std::string datacontenttype = "application/json";
};

/// A CloudEvents 1.0 structured JSON event around `data`: "data" holds it as JSON when it is
/// valid JSON and the content type is JSON, else "data_base64" holds its bytes.
std::string cloudevents_structured(const CloudEventAttributes& attributes, std::string_view data);

/// CloudEvents 1.0 binary mode for Kafka: ce_specversion, ce_id, ce_source, ce_type, ce_time,
/// ce_subject (when set) and content-type, with id and time filled in as above.
std::vector<std::pair<std::string, std::string>> cloudevents_kafka_headers(
    const CloudEventAttributes& attributes);

/// "2026-11-22T06:31:45.123Z"
std::string rfc3339_utc(std::chrono::system_clock::time_point when);

}  // namespace outbox
