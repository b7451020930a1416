// The JSON Lines `outbox send` and `outbox enqueue` read with --objects.
#pragma once

#include <outbox/message.hpp>

#include <simdjson.h>

#include <string>
#include <string_view>

namespace outbox::cli {

/// One --objects line into a Message: {"body": "...", "group_id", "dedup_id", "attributes",
/// "delay"} and, when `to` is given, an optional "to" (the event's own target). False with
/// `why` saying what is wrong (a byte order mark, invalid UTF-8 at byte N, a lone surrogate,
/// a number out of range, not an object, a field of the wrong type).
bool parse_object_line(simdjson::dom::parser& parser, std::string_view line, Message& m,
                       std::string& why, std::string* to = nullptr);

}  // namespace outbox::cli
