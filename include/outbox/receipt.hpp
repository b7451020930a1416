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
    std::string topic{};            // Kafka
    std::int32_t partition = -1;    // Kafka: where the message went
    std::int64_t offset = -1;       // Kafka: its offset in that partition
    std::string staged_url{};       // the pre-signed URL when the payload was staged in S3
    std::string staged_key{};       // its object key
    /// Requests that carried this message. Kafka: 1, as librdkafka does not report its own
    /// retries.
    std::uint32_t attempts = 0;
    /// On failure, what the last attempt got; on success, the last retried failure, if any.
    Diagnostics diagnostics{};
};

}  // namespace outbox
