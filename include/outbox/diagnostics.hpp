// What the service said about a failed (or retried) request, for logs and dead-letter handling.
#pragma once

#include <string>

namespace outbox {

struct Diagnostics {
    unsigned http_status = 0;  // 0 when no HTTP reply came back
    std::string code{};     // the service's error code: "ThrottlingException", "AccessDenied", ...
    std::string message{};  // the service's (or outbox's) explanation
    std::string request_id{};   // x-amzn-RequestId / x-amz-request-id, for AWS support
    bool sender_fault = false;  // a batch entry the service blamed on the sender

    bool empty() const noexcept {
        return http_status == 0 && code.empty() && message.empty() && request_id.empty();
    }
};

}  // namespace outbox
