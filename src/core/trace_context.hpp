// Trace context on a Message: the W3C traceparent and tracestate, sent as attributes (SQS) or
// headers (Kafka) of those names, and AWS X-Ray's header, SQS's AWSTraceHeader system
// attribute. Checks, and the moves each destination and the durable outbox make. Private.
#pragma once

#include <outbox/message.hpp>

#include <string>
#include <string_view>

namespace outbox::detail {

/// Whether the message carries any trace field: most do not, and need neither call below.
inline bool has_trace_context(const Message& m) noexcept {
    return !m.traceparent.empty() || !m.tracestate.empty() || !m.aws_trace_header.empty();
}

/// Empty when the message's trace fields are well formed (or absent); else what is wrong.
std::string trace_context_error(const Message& m);

/// Moves traceparent and tracestate into attributes of those names, after the message's own.
/// False (and `why`) when the message has such an attribute already.
bool move_trace_context_into_attributes(Message& m, std::string& why);

/// The durable outbox keeps aws_trace_header as an attribute of this type (the store has no
/// column for it); the relay puts it back before sending. The type is a valid SQS custom
/// type, so a relay of an older version sends it as a plain attribute rather than failing.
inline constexpr std::string_view stored_aws_trace_header_type = "String.outbox-aws-trace-header";
void store_aws_trace_header(Message& m);
void restore_aws_trace_header(Message& m);

}  // namespace outbox::detail
