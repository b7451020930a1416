// Moving a Message or a Receipt field by field. libstdc++ 12 moves a string kept in place (the
// short ones, the empty ones) with a call to memcpy, so the implicit move of a Message costs
// eight such calls, and a Receipt's nine, though most of their strings are empty. Private to
// the library.
#pragma once

#include <outbox/message.hpp>
#include <outbox/receipt.hpp>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace outbox::detail {

// Every field is listed below: a new one must be added there too.
static_assert(sizeof(Message) == 8 * sizeof(std::string) + sizeof(std::vector<MessageAttribute>) +
                                     sizeof(std::chrono::seconds),
              "a field was added to Message: move it in move_into_empty_message");

/// `to` must be empty (default-constructed): its fields are only written where `from`'s are
/// not empty. `from` is left as a moved-from Message.
inline void move_into_empty_message(Message& to, Message&& from) noexcept {
    const auto take = [](std::string& into, std::string& out) {
        if (!out.empty()) into = std::move(out);
    };
    take(to.body, from.body);
    if (!from.attributes.empty()) to.attributes = std::move(from.attributes);
    take(to.group_id, from.group_id);
    take(to.deduplication_id, from.deduplication_id);
    to.delay = from.delay;
    take(to.target, from.target);
    take(to.idempotency_key, from.idempotency_key);
    take(to.traceparent, from.traceparent);
    take(to.tracestate, from.tracestate);
    take(to.aws_trace_header, from.aws_trace_header);
}

// Receipt: five strings, then partition, offset and attempts in eight bytes each (padded).
// A new field small enough to fit in that padding would not change the sizes: a field added
// to Receipt or Diagnostics must be added below whatever these say.
static_assert(sizeof(Receipt) == 5 * sizeof(std::string) + 3 * 8 + sizeof(Diagnostics),
              "a field was added to Receipt: move it in move_into_empty_receipt");
// Diagnostics: four strings, http_status and sender_fault in eight bytes each (padded).
static_assert(sizeof(Diagnostics) == 4 * sizeof(std::string) + 2 * 8,
              "a field was added to Diagnostics: move it in move_into_empty_receipt");

/// `to` must be empty (default-constructed): its strings are only written where `from`'s are
/// not empty.
inline void move_into_empty_receipt(Receipt& to, Receipt&& from) noexcept {
    const auto take = [](std::string& into, std::string& out) {
        if (!out.empty()) into = std::move(out);
    };
    take(to.message_id, from.message_id);
    take(to.sequence_number, from.sequence_number);
    take(to.topic, from.topic);
    to.partition = from.partition;
    to.offset = from.offset;
    take(to.staged_url, from.staged_url);
    take(to.staged_key, from.staged_key);
    to.attempts = from.attempts;
    to.diagnostics.http_status = from.diagnostics.http_status;
    take(to.diagnostics.code, from.diagnostics.code);
    take(to.diagnostics.message, from.diagnostics.message);
    take(to.diagnostics.service_message, from.diagnostics.service_message);
    take(to.diagnostics.request_id, from.diagnostics.request_id);
    to.diagnostics.sender_fault = from.diagnostics.sender_fault;
}

}  // namespace outbox::detail
