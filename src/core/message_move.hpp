// Moving a Message field by field. libstdc++ 12 moves a string kept in place (the short ones,
// the empty ones) with a call to memcpy, so the implicit move of a Message costs eight such
// calls though most of its strings are empty. Private to the library.
#pragma once

#include <outbox/message.hpp>

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

}  // namespace outbox::detail
