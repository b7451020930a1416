#include "postgresql_text.hpp"

#include <outbox/detail/json_writer.hpp>

#include "../base64.hpp"

#include <openssl/evp.h>
#include <simdjson.h>

namespace outbox::detail {
namespace {

bool decode_base64(std::string_view in, std::string& out) {
    if (in.size() % 4 != 0) return false;
    out.resize(in.size() / 4 * 3 + 1);
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    if (n < 0) return false;
    std::size_t size = static_cast<std::size_t>(n);
    // EVP_DecodeBlock counts the padding as zero bytes.
    for (std::size_t i = in.size(); i > 0 && in[i - 1] == '=' && size > 0; --i) --size;
    out.resize(size);
    return true;
}

}  // namespace

void append_attributes_json(const std::vector<MessageAttribute>& attributes, std::string& out) {
    if (attributes.empty()) return;
    out.push_back('{');
    bool first = true;
    for (const MessageAttribute& a : attributes) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, a.name);
        out += ":{\"DataType\":";
        append_json_string(out, a.data_type);
        if (a.data_type.rfind("Binary", 0) == 0) {
            out += ",\"BinaryValue\":\"";
            append_base64(out, a.value);
            out.push_back('"');
        } else {
            out += ",\"StringValue\":";
            append_json_string(out, a.value);
        }
        out.push_back('}');
    }
    out.push_back('}');
}

bool parse_attributes_json(std::string_view json, std::vector<MessageAttribute>& out,
                           std::string& why) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (auto error = parser.parse(json.data(), json.size()).get(root)) {
        why = std::string("not JSON: ") + simdjson::error_message(error);
        return false;
    }
    simdjson::dom::object object;
    if (root.get_object().get(object)) {
        why = "not a JSON object of attributes";
        return false;
    }
    for (auto [key, value] : object) {
        MessageAttribute a;
        a.name = std::string(key);
        std::string_view type, text;
        if (value["DataType"].get_string().get(type)) {
            why = "attribute \"" + a.name + "\" has no DataType string";
            return false;
        }
        a.data_type = std::string(type);
        if (a.data_type.rfind("Binary", 0) == 0) {
            if (value["BinaryValue"].get_string().get(text) || !decode_base64(text, a.value)) {
                why = "attribute \"" + a.name + "\" has no BinaryValue in base64";
                return false;
            }
        } else if (value["StringValue"].get_string().get(text)) {
            why = "attribute \"" + a.name + "\" has no StringValue string";
            return false;
        } else {
            a.value = std::string(text);
        }
        out.push_back(std::move(a));
    }
    return true;
}

void append_array_text(std::string& out, std::string_view text) {
    std::string clean;
    clean.reserve(text.size());
    for (char c : text)
        if (c != '\0') clean.push_back(c);
    std::string scratch;
    if (!append_json_string(scratch, clean))  // it says whether the text is valid UTF-8
        for (char& c : clean)
            if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    out.push_back('"');
    for (char c : clean) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('"');
}

std::string redact_connection_string(std::string_view conninfo) {
    std::string s(conninfo);
    const auto scheme = s.find("://");
    if (scheme != std::string::npos) {
        const auto start = scheme + 3;
        auto end = s.find_first_of("/?", start);
        if (end == std::string::npos) end = s.size();
        const auto at = s.rfind('@', end);
        if (at != std::string::npos && at >= start) {
            const auto colon = s.find(':', start);
            if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
        }
    }
    // password=... as a URI parameter or a key=value pair.
    for (std::size_t from = 0;;) {
        const auto p = s.find("password", from);
        if (p == std::string::npos) break;
        auto eq = p + 8;
        while (eq < s.size() && s[eq] == ' ') ++eq;
        if (eq >= s.size() || s[eq] != '=') {
            from = p + 8;
            continue;
        }
        auto v = eq + 1;
        while (v < s.size() && s[v] == ' ') ++v;
        auto end = v;
        if (end < s.size() && s[end] == '\'') {
            ++end;
            while (end < s.size() && s[end] != '\'') end += s[end] == '\\' ? 2 : 1;
            end = std::min(end + 1, s.size());
        } else {
            while (end < s.size() && s[end] != '&' && s[end] != ' ') ++end;
        }
        s.replace(v, end - v, "***");
        from = v + 3;
    }
    return s;
}

}  // namespace outbox::detail
