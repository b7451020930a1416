#include "outbox/postgresql_text.hpp"

#include <outbox/json_string.hpp>

#include "core/base64.hpp"

#include <openssl/evp.h>
#include <simdjson.h>
#include <algorithm>

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

std::string postgresql_refusal(const std::string& target, const Message& message) {
    auto bad = [](std::string_view text) -> const char* {
        if (text.find('\0') != std::string_view::npos) return "a NUL byte";
        std::string scratch;
        if (!append_json_string(scratch, text)) return "bytes that are not UTF-8";
        return nullptr;
    };
    for (const auto& [field, text] : {std::pair<const char*, const std::string*>{"target", &target},
                                      {"group id", &message.group_id},
                                      {"deduplication id", &message.deduplication_id}})
        if (const char* why = bad(*text))
            return std::string("its ") + field + " holds " + why +
                   ", which the PostgreSQL store cannot keep";
    for (const MessageAttribute& a : message.attributes) {
        const bool binary = a.data_type.rfind("Binary", 0) == 0;
        for (const auto& [part, text] :
             {std::pair<const char*, const std::string*>{"name", &a.name},
              {"type", &a.data_type},
              {"value", binary ? nullptr : &a.value}})
            if (text != nullptr)
                if (const char* why = bad(*text))
                    return "attribute \"" + a.name + "\": its " + part + " holds " + why +
                           ", which the PostgreSQL store cannot keep";
    }
    if (message.delay.count() < 0 || message.delay.count() > 900)
        return "its delay is " + std::to_string(message.delay.count()) +
               " s; the PostgreSQL store keeps 0 to 900";
    return {};
}

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

namespace {

// Where a URI's user part is: after "scheme://", before an '@' that comes before the first
// '/' (libpq stops looking for credentials there). Empty when there is none.
struct Span {
    std::size_t at = 0, size = 0;
};

Span uri_password(std::string_view s) {
    const auto scheme = s.find("://");
    if (scheme == std::string_view::npos) return {};
    const auto start = scheme + 3;
    auto end = s.find('/', start);
    if (end == std::string_view::npos) end = s.size();
    const auto at = s.rfind('@', end);
    if (at == std::string_view::npos || at < start) return {};
    const auto colon = s.find(':', start);
    if (colon == std::string_view::npos || colon > at) return {};
    return {colon + 1, at - colon - 1};
}

// Every value of a password=... parameter (URI query or key=value string), as written.
std::vector<Span> password_parameters(std::string_view s) {
    std::vector<Span> out;
    for (std::size_t from = 0;;) {
        const auto p = s.find("password", from);
        if (p == std::string_view::npos) break;
        from = p + 8;
        auto eq = p + 8;
        while (eq < s.size() && s[eq] == ' ') ++eq;
        if (eq >= s.size() || s[eq] != '=') continue;
        auto v = eq + 1;
        while (v < s.size() && s[v] == ' ') ++v;
        auto end = v;
        if (end < s.size() && s[end] == '\'') {
            ++end;
            while (end < s.size() && s[end] != '\'') end += s[end] == '\\' ? 2 : 1;
            end = std::min(end + 1, s.size());
        } else {
            while (end < s.size() && s[end] != '&' && s[end] != ' ') end += s[end] == '\\' ? 2 : 1;
            end = std::min(end, s.size());
        }
        out.push_back({v, end - v});
        from = end;
    }
    return out;
}

// %XX decoded; nothing when the text is not valid percent-encoding.
std::string percent_decoded(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        auto hex = [](char c) {
            return c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        };
        if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0) return {};
        out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
        i += 2;
    }
    return out;
}

// Each region of the spans' union replaced by "***", once: spans may overlap (a keyword's
// unquoted value running into a URI's password), and replacing one would leave the rest of
// the other.
std::string replace_union(std::string text, std::vector<Span> spans) {
    std::sort(spans.begin(), spans.end(), [](Span a, Span b) { return a.at < b.at; });
    std::vector<Span> regions;
    for (const Span& span : spans) {
        if (span.size == 0) continue;
        if (!regions.empty() && span.at <= regions.back().at + regions.back().size) {
            Span& r = regions.back();
            r.size = std::max(r.size, span.at + span.size - r.at);
        } else {
            regions.push_back(span);
        }
    }
    for (auto r = regions.rbegin(); r != regions.rend(); ++r) text.replace(r->at, r->size, "***");
    return text;
}

}  // namespace

std::string uri_user_part_problem(std::string_view uri) {
    const auto scheme = uri.find("://");
    if (scheme == std::string_view::npos) return {};
    const auto start = scheme + 3;
    // libpq ends the user part at the first '@' or '/'.
    const auto stop = uri.find_first_of("@/", start);
    if (stop != std::string_view::npos && uri[stop] == '@') {
        // What follows is the host; an '@' in it ended the password early.
        const auto host_end = uri.find_first_of("/?", stop + 1);
        const auto host =
            uri.substr(stop + 1, host_end == std::string_view::npos ? std::string_view::npos
                                                                    : host_end - stop - 1);
        if (host.find('@') != std::string_view::npos)
            return "an '@' in the URI's user name or password must be written %40";
        return {};
    }
    // No '@' before the first '/', but one later (before any query) after a "user:": the user
    // part held a '/', which ended it early.
    const auto at = uri.find('@', start);
    const auto query = uri.find('?', start);
    if (at != std::string_view::npos && (query == std::string_view::npos || at < query) &&
        uri.substr(start, at - start).find(':') != std::string_view::npos)
        return "a '/' in the URI's user name or password must be written %2F";
    return {};
}

std::string redact_user_part_loosely(std::string_view uri) {
    const auto scheme = uri.find("://");
    const auto at = uri.rfind('@');
    if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme + 3)
        return redact_connection_string(uri);
    return std::string(uri.substr(0, scheme + 3)) + "***" + std::string(uri.substr(at));
}

std::string redact_connection_string(std::string_view conninfo) {
    std::vector<Span> spans = password_parameters(conninfo);
    if (const Span user = uri_password(conninfo); user.size != 0) spans.push_back(user);
    return replace_union(std::string(conninfo), std::move(spans));
}

std::string scrub_secrets(std::string text, const std::vector<std::string>& secrets) {
    std::vector<Span> spans;
    for (const std::string& secret : secrets) {
        if (secret.empty()) continue;
        for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 1))
            spans.push_back({at, secret.size()});
    }
    return replace_union(std::move(text), std::move(spans));
}

std::vector<std::string> connection_secrets(std::string_view conninfo) {
    std::vector<std::string> out;
    std::vector<Span> spans = password_parameters(conninfo);
    if (const Span user = uri_password(conninfo); user.size != 0) spans.push_back(user);
    for (const Span& span : spans) {
        const std::string raw(conninfo.substr(span.at, span.size));
        if (raw.size() < 3) {
            // Too short to search for safely in messages; still hidden in describe().
            continue;
        }
        out.push_back(raw);
        if (std::string decoded = percent_decoded(raw); decoded.size() >= 3 && decoded != raw)
            out.push_back(std::move(decoded));
    }
    return out;
}

}  // namespace outbox::detail
