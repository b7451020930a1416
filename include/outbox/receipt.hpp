// The outcome of a send: where the message went, how many attempts it took, and what the
// service said.
#pragma once

#include <outbox/diagnostics.hpp>

#include <cstdint>
#include <string>

namespace outbox {

struct Receipt {
    std::string message_id{};       // SQS MessageId
    std::string sequence_number{};  // SQS FIFO queues
    std::string staged_url{};       // the pre-signed URL when the payload was staged in S3
    std::string staged_key{};       // its object key
    std::uint32_t attempts = 0;     // requests that carried this message
    /// On failure, what the last attempt got; on success, the last retried failure, if any.
    Diagnostics diagnostics{};
};

}  // namespace outbox
