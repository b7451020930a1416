// What a queue or topic carries: the raw body, the documented staged-payload message, a
// CloudEvents 1.0 event, or the SQS Extended Client Library's pointer to a staged payload.
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
    /// The Amazon SQS Extended Client Library's format (Java, Python): a staged payload is
    /// sent as its pointer, ["software.amazon.payloadoffloading.PayloadS3Pointer",
    /// {"s3BucketName":…,"s3Key":…}], with the Number attribute ExtendedPayloadSize (a Kafka
    /// header) holding the payload's size; consumers fetch the object with their own
    /// credentials. Messages not staged go as they are, as the library sends them. Needs a
    /// stager.
    extended_client,
};

/// The attribute (Kafka header) an Extended Client pointer carries: the payload's size in
/// bytes. Readers also know the older name, SQSLargePayloadSize.
inline constexpr std::string_view extended_payload_size_attribute = "ExtendedPayloadSize";
/// The older name of that attribute: reserved too, as the library reserves it.
inline constexpr std::string_view legacy_payload_size_attribute = "SQSLargePayloadSize";

/// ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":…,"s3Key":…}],
/// compact, as the Extended Client Library writes it.
std::string extended_client_pointer(std::string_view bucket, std::string_view key);

/// {"status":"success","type":"s3_payload","url":"…","expires_in":600}: these four fields,
/// this order, compact, the URL escaped as a JSON string.
std::string staged_payload_message(std::string_view url, std::chrono::seconds expires_in);
/// The same with a fifth field, "link" (a long-lived link, PayloadStagerConfig::links), when
/// `link` is not empty; the four fields otherwise.
std::string staged_payload_message(std::string_view url, std::chrono::seconds expires_in,
                                   std::string_view link);

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
