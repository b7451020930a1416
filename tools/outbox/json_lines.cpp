#include "json_lines.hpp"

namespace outbox::cli {
namespace {

// Why simdjson refused a line, in words that say what to fix.
std::string json_refusal(simdjson::error_code err, std::string_view line) {
    using namespace simdjson;
    switch (err) {
        case UTF8_ERROR: {
            std::size_t i = 0;  // the first invalid sequence: a slow path on bad input only
            while (i < line.size()) {
                const auto b = static_cast<unsigned char>(line[i]);
                const std::size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
                if (i + len > line.size() || !validate_utf8(line.data() + i, len)) break;
                i += len;
            }
            return "invalid UTF-8 at byte " + std::to_string(i);
        }
        case STRING_ERROR:
            return "a string has an invalid escape: a lone surrogate (\\ud800 to \\udfff "
                   "without its pair) or an unknown escape";
        case UNESCAPED_CHARS:
            return "a string contains an unescaped control character";
        case UNCLOSED_STRING:
            return "a string is not closed";
        case NUMBER_ERROR:
        case NUMBER_OUT_OF_RANGE:
            return "a number is malformed or out of range";
        case EMPTY:
            return "the line is empty";
        default:
            return std::string("not valid JSON (") + error_message(err) + ")";
    }
}

}  // namespace

bool parse_object_line(simdjson::dom::parser& parser, std::string_view line, Message& m,
                       std::string& why, std::string* to) {
    using namespace simdjson;
    if (line.starts_with("\xEF\xBB\xBF")) {
        why = "the line starts with a UTF-8 byte order mark (remove it)";
        return false;
    }
    const padded_string padded(line);
    dom::element root;
    if (auto err = parser.parse(padded).get(root); err != SUCCESS) {
        why = json_refusal(err, line);
        return false;
    }
    dom::object obj;
    if (root.get_object().get(obj) != SUCCESS) {
        why = "not a JSON object";
        return false;
    }
    std::string_view s;
    if (obj["body"].get_string().get(s) != SUCCESS) {
        why = "field \"body\" must be a string";
        return false;
    }
    if (to != nullptr) {
        auto t = obj["to"];
        if (t.error() != NO_SUCH_FIELD && !t.is_null()) {
            std::string_view target;
            if (t.get_string().get(target) != SUCCESS || target.empty()) {
                why = "field \"to\" must be a non-empty string";
                return false;
            }
            *to = std::string(target);
        }
    }
    m.body = std::string(s);
    for (auto [key, field] :
         {std::pair{"group_id", &m.group_id}, std::pair{"dedup_id", &m.deduplication_id},
          std::pair{"traceparent", &m.traceparent}, std::pair{"tracestate", &m.tracestate},
          std::pair{"aws_trace_header", &m.aws_trace_header}}) {
        auto v = obj[key];
        if (v.error() == NO_SUCH_FIELD || v.is_null()) continue;
        if (v.get_string().get(s) != SUCCESS) {
            why = std::string("field \"") + key + "\" must be a string";
            return false;
        }
        *field = std::string(s);
    }
    if (auto d = obj["delay"]; d.error() != NO_SUCH_FIELD) {
        int64_t seconds = 0;
        if (d.get_int64().get(seconds) != SUCCESS) {
            why = "field \"delay\" must be a whole number of seconds";
            return false;
        }
        m.delay = std::chrono::seconds(seconds);
    }
    if (auto a = obj["attributes"]; a.error() != NO_SUCH_FIELD) {
        dom::object attributes;
        if (a.get_object().get(attributes) != SUCCESS) {
            why = "field \"attributes\" must be an object";
            return false;
        }
        for (auto [name, value] : attributes) {
            MessageAttribute attr;
            attr.name = std::string(name);
            if (value.get_string().get(s) == SUCCESS) {
                attr.value = std::string(s);
            } else if (value.is_number()) {
                attr.data_type = "Number";
                attr.value = simdjson::minify(value);
            } else {
                dom::object typed;
                std::string_view type, text;
                if (value.get_object().get(typed) != SUCCESS ||
                    typed["type"].get_string().get(type) != SUCCESS ||
                    typed["value"].get_string().get(text) != SUCCESS) {
                    why = "attribute \"" + attr.name +
                          "\" must be a string, a number or {\"type\": ..., \"value\": \"...\"}";
                    return false;
                }
                attr.data_type = std::string(type);
                attr.value = std::string(text);
            }
            m.attributes.push_back(std::move(attr));
        }
    }
    return true;
}

}  // namespace outbox::cli
