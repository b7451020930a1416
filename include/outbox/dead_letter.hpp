// A message a destination gave up on, handed to the embedding backend so it can park it
// (a table, a file, another queue) instead of losing it.
#pragma once

#include <outbox/message.hpp>
#include <outbox/receipt.hpp>

#include <boost/system/error_code.hpp>

#include <functional>
#include <string>

namespace outbox {

struct DeadLetter {
    /// The message as it was given to async_send (after the envelope, if any, was applied;
    /// a staged message's body is its staged-payload link, the payload stays in S3).
    Message message;
    boost::system::error_code error;  // what the send completed with
    /// receipt.diagnostics: what the service said last; receipt.attempts: how many requests
    /// carried the message; receipt.staged_url: where a staged payload is.
    Receipt receipt;
    std::string target;  // the queue URL or the Kafka topic
};

/// Called once for each failed message, before its send's handler runs, on a thread of the
/// destination's executor; when that executor runs on several threads, calls for different
/// messages may run at once, so make it thread-safe. It must not block; it may call async_send
/// on any destination.
/// An exception thrown from it is caught and logged; the message still completes.
using DeadLetterHandler = std::function<void(DeadLetter&&)>;

}  // namespace outbox
