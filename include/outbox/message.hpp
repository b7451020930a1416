// One event to deliver: a body plus the optional metadata queues and topics understand.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace outbox {

/// A typed name/value pair carried beside the body (SQS message attributes, Kafka headers).
struct MessageAttribute {
    std::string name{};
    /// "String", "Number" or "Binary", optionally with a custom suffix: "String.json".
    std::string data_type = "String";
    /// The text of a String or Number; the raw bytes of a Binary (outbox base64-encodes them).
    std::string value{};
};

struct Message {
    std::string body{};
    std::vector<MessageAttribute> attributes{};  // SQS: at most 10
    /// SQS FIFO queues: required; the order of delivery holds within a group. Standard
    /// queues accept it too (fair queues).
    std::string group_id{};
    /// SQS FIFO queues: duplicates with the same id within 5 minutes are dropped by SQS.
    /// Empty: the queue's content-based deduplication must be on.
    std::string deduplication_id{};
    /// SQS standard queues: hide the message for this long (0 to 900 seconds).
    std::chrono::seconds delay{0};
    /// Where a RoutingDestination sends it (a queue URL, a topic, a customer's id), when the
    /// router has no route function of its own. Never sent: queues and topics do not see it,
    /// and it counts against no size limit.
    std::string target{};
    /// A stable identity of the event, the same on every delivery of it (the durable outbox
    /// sets its store's identity and the event's id). Destinations that can drop duplicates
    /// use it: SQS FIFO queues take it as the deduplication id when the message has none.
    /// Never sent otherwise.
    std::string idempotency_key{};
    /// W3C trace context (https://www.w3.org/TR/trace-context/): "00-<32 hex trace id>-<16 hex
    /// parent id>-<2 hex flags>", lower case. Sent as the message attribute (SQS) or header
    /// (Kafka) "traceparent", with "tracestate" beside it when set; on SQS each is one of the
    /// ten attributes. A malformed one is refused when sent.
    std::string traceparent{};
    std::string tracestate{};
    /// AWS X-Ray's trace header ("Root=1-…;Parent=…;Sampled=1"): SQS's AWSTraceHeader system
    /// attribute, which counts against neither the size nor the ten attributes. Kafka has no
    /// such attribute: it is not sent there.
    std::string aws_trace_header{};
};

}  // namespace outbox
