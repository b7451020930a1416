#include "core/trace_context.hpp"

#include <algorithm>

namespace outbox::detail {
namespace {

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

bool is_printable_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// W3C Trace Context, version 00 (a later version may append fields after a '-').
std::string traceparent_error(std::string_view t) {
    const std::string shape =
        "traceparent must be 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case";
    if (t.size() < 55 || t[2] != '-' || t[35] != '-' || t[52] != '-') return shape;
    const std::string_view version = t.substr(0, 2), trace_id = t.substr(3, 32),
                           parent_id = t.substr(36, 16), flags = t.substr(53, 2);
    if (!is_lower_hex(version) || !is_lower_hex(trace_id) || !is_lower_hex(parent_id) ||
        !is_lower_hex(flags))
        return shape;
    if (version == "ff") return "traceparent version ff is invalid";
    if (version == "00" && t.size() != 55) return "a version 00 traceparent has 55 characters";
    if (t.size() > 55 && t[55] != '-') return shape;
    if (all_zero(trace_id)) return "traceparent's trace id is all zeros";
    if (all_zero(parent_id)) return "traceparent's parent id is all zeros";
    return {};
}

}  // namespace

std::string trace_context_error(const Message& m) {
    if (!m.traceparent.empty()) {
        if (std::string why = traceparent_error(m.traceparent); !why.empty())
            return why + " (got \"" + m.traceparent.substr(0, 80) + "\")";
    }
    if (!m.tracestate.empty()) {
        if (m.traceparent.empty()) return "tracestate without traceparent";
        if (m.tracestate.size() > 512 || !is_printable_ascii(m.tracestate))
            return "tracestate must be at most 512 printable ASCII characters";
    }
    if (!m.aws_trace_header.empty() &&
        (m.aws_trace_header.size() > 1024 || !is_printable_ascii(m.aws_trace_header)))
        return "aws_trace_header must be at most 1024 printable ASCII characters";
    return {};
}

bool move_trace_context_into_attributes(Message& m, std::string& why) {
    for (auto [field_name, field] :
         {std::pair{"traceparent", &m.traceparent}, std::pair{"tracestate", &m.tracestate}}) {
        if (field->empty()) continue;
        const std::string name = field_name;  // Clang 14 cannot capture a binding
        if (std::any_of(m.attributes.begin(), m.attributes.end(),
                        [&](const MessageAttribute& a) { return a.name == name; })) {
            why = std::string("the message has an attribute \"") + name + "\" and a " + name +
                  " field: give it once";
            return false;
        }
        m.attributes.push_back({name, "String", std::move(*field)});
        field->clear();
    }
    return true;
}

void store_aws_trace_header(Message& m) {
    if (m.aws_trace_header.empty()) return;
    m.attributes.push_back({"AWSTraceHeader", std::string(stored_aws_trace_header_type),
                            std::move(m.aws_trace_header)});
    m.aws_trace_header.clear();
}

void restore_aws_trace_header(Message& m) {
    auto it = std::find_if(m.attributes.begin(), m.attributes.end(), [](const MessageAttribute& a) {
        return a.data_type == stored_aws_trace_header_type;
    });
    if (it == m.attributes.end()) return;
    m.aws_trace_header = std::move(it->value);
    m.attributes.erase(it);
}

}  // namespace outbox::detail
