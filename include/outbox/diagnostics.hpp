// What the service said about a failed (or retried) request, and what outbox makes of it, for
// logs and dead-letter handling. http_status, code, service_message and request_id are the
// service's own words, verbatim (secrets redacted); message is outbox's account, which may
// quote the service.
#pragma once

#include <string>

namespace outbox {

struct Diagnostics {
    unsigned http_status = 0;  // 0 when no HTTP reply came back
    std::string code{};     // the service's error code: "ThrottlingException", "AccessDenied", ...
    std::string message{};  // outbox's explanation: what happened, in words, for people
    std::string request_id{};   // x-amzn-RequestId / x-amz-request-id, for AWS support
    bool sender_fault = false;  // a batch entry the service blamed on the sender
    /// The message of the service's error reply as it came (empty when the service said
    /// nothing: a transport failure, a check before sending, Kafka, whose brokers send codes).
    /// Last, so that aggregate initialisation written for the fields above keeps its meaning.
    std::string service_message{};

    bool empty() const noexcept {
        return http_status == 0 && code.empty() && message.empty() && service_message.empty() &&
               request_id.empty();
    }
};

}  // namespace outbox
