#include "aws/sqs/sqs_protocol.hpp"

#include "aws/aws_host.hpp"
#include "core/md5_lanes.hpp"

#include <outbox/error.hpp>
#include <outbox/json_string.hpp>

#include "core/base64.hpp"
#include "core/swar.hpp"

#include <openssl/evp.h>
#include <openssl/md5.h>
#include <simdjson.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

namespace outbox::detail::sqs {
namespace {

using boost::system::error_code;

bool iequals_prefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if ((s[i] | 0x20) != (prefix[i] | 0x20)) return false;
    return true;
}

void to_hex(const unsigned char* digest, Md5Hex& out) {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < 16; ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xF];
    }
}

bool is_binary_type(std::string_view data_type) {
    return data_type.starts_with("Binary");
}

// Group and deduplication ids: 1 to 128 characters, letters, digits and ASCII punctuation.
bool is_valid_fifo_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

bool is_valid_attribute_name(std::string_view name, std::string& why) {
    if (name.empty() || name.size() > 256) {
        why = "must have 1 to 256 characters";
        return false;
    }
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        if (!ok) {
            why = "may only contain A-Z, a-z, 0-9, '_', '-' and '.'";
            return false;
        }
    }
    if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos) {
        why = "must not start or end with '.' or contain \"..\"";
        return false;
    }
    if (iequals_prefix(name, "aws.") || iequals_prefix(name, "amazon.")) {
        why = "must not start with \"AWS.\" or \"Amazon.\" (reserved)";
        return false;
    }
    return true;
}

bool is_valid_number(std::string_view v) {
    std::size_t i = 0;
    if (i < v.size() && (v[i] == '-' || v[i] == '+')) ++i;
    std::size_t digits = 0;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
    if (i < v.size() && v[i] == '.') {
        ++i;
        while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
    }
    if (digits == 0) return false;
    if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
        ++i;
        if (i < v.size() && (v[i] == '-' || v[i] == '+')) ++i;
        std::size_t exp = 0;
        while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++exp;
        if (exp == 0) return false;
    }
    return i == v.size();
}

error_code invalid(std::string& why, std::string text) {
    why = std::move(text);
    return Errc::invalid_message;
}

}  // namespace

std::string region_from_host(std::string_view host) {
    if (std::string r = detail::region_in_aws_host(host, "sqs"); !r.empty()) return r;
    // The legacy form REGION.queue.amazonaws.com.
    for (std::string_view suffix : {".queue.amazonaws.com", ".queue.amazonaws.com.cn"})
        if (host.ends_with(suffix)) {
            host.remove_suffix(suffix.size());
            if (!host.empty() && host.find('.') == std::string_view::npos) return std::string(host);
        }
    return {};
}

error_code parse_queue_url(std::string_view url, QueueAddress& out, std::string& why) {
    std::string target;
    if (parse_http_url(url, out.origin, target, &why)) return Errc::invalid_url;
    // "/ACCOUNT/NAME": two non-empty segments, no query.
    std::string_view path(target);
    const auto second = path.size() > 1 ? path.find('/', 1) : std::string_view::npos;
    if (path.find('?') != std::string_view::npos || second == std::string_view::npos ||
        second == 1 || second + 1 >= path.size() ||
        path.find('/', second + 1) != std::string_view::npos) {
        why = "the path must be /ACCOUNT_ID/QUEUE_NAME";
        return Errc::invalid_url;
    }
    out.url = std::string(url);
    out.name = std::string(path.substr(second + 1));
    out.fifo = out.name.ends_with(".fifo");
    out.region = region_from_host(out.origin.host);
    return {};
}

namespace {

// The first byte below 0x20 at or after `i`, or the size of `text`: sixteen bytes at a time,
// then eight (the lowest flagged byte of a word is a true hit), then one.
std::size_t first_control_byte(std::string_view text, std::size_t i) noexcept {
    const char* p = text.data();
    const std::size_t n = text.size();
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        // Unsigned v <= 0x1f exactly when min(v, 0x1f) == v.
        const __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        if (const int mask = _mm_movemask_epi8(control); mask != 0)
            return i + static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(mask)));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        const auto w = detail::swar::load(p + i);
        if (const auto flags = detail::swar::has_less(w, 0x20))
            return i + detail::swar::first_flagged_byte(w, flags,
                                                        [](unsigned char c) { return c < 0x20; });
    }
    for (; i < n; ++i)
        if (static_cast<unsigned char>(p[i]) < 0x20) return i;
    return n;
}

}  // namespace

bool is_valid_sqs_text(std::string_view text, std::size_t& bad_offset) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    if (!simdjson::validate_utf8(text.data(), n)) {
        // Find the first invalid sequence for the message: a slow path on bad input only.
        std::size_t i = 0;
        while (i < n) {
            std::size_t len = p[i] < 0x80 ? 1 : p[i] < 0xE0 ? 2 : p[i] < 0xF0 ? 3 : 4;
            if (i + len > n || !simdjson::validate_utf8(text.data() + i, len)) break;
            i += len;
        }
        bad_offset = i;
        return false;
    }
    // Control characters other than tab, LF and CR.
    for (std::size_t i = first_control_byte(text, 0); i < n; i = first_control_byte(text, i + 1)) {
        if (p[i] != 0x09 && p[i] != 0x0A && p[i] != 0x0D) {
            bad_offset = i;
            return false;
        }
    }
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF (in valid UTF-8, 0xEF only starts a sequence).
    for (const void* hit = std::memchr(p, 0xEF, n); hit != nullptr;) {
        const std::size_t i = static_cast<std::size_t>(static_cast<const unsigned char*>(hit) - p);
        if (i + 2 < n && p[i + 1] == 0xBF && (p[i + 2] == 0xBE || p[i + 2] == 0xBF)) {
            bad_offset = i;
            return false;
        }
        hit = i + 1 < n ? std::memchr(p + i + 1, 0xEF, n - i - 1) : nullptr;
    }
    return true;
}

std::size_t message_size(const Message& message) noexcept {
    std::size_t size = message.body.size();
    for (const auto& a : message.attributes)
        size += a.name.size() + a.data_type.size() + a.value.size();
    return size;
}

error_code validate_message(const Message& m, bool fifo_queue, std::string& why, bool check_body) {
    std::size_t bad = 0;
    if (m.body.empty())
        return invalid(why, "the body is empty (SQS requires at least one character)");
    if (check_body && !is_valid_sqs_text(m.body, bad))
        return invalid(why, "the body has a character SQS does not accept at byte " +
                                std::to_string(bad) +
                                " (allowed: valid UTF-8 of #x9, #xA, #xD, #x20-#xD7FF, "
                                "#xE000-#xFFFD, #x10000-#x10FFFF)");
    if (m.attributes.size() > max_attributes)
        return invalid(why, "it has " + std::to_string(m.attributes.size()) +
                                " attributes; SQS allows at most 10");
    for (std::size_t i = 0; i < m.attributes.size(); ++i) {
        const auto& a = m.attributes[i];
        std::string reason;
        if (!is_valid_attribute_name(a.name, reason))
            return invalid(why, "attribute \"" + a.name + "\": the name " + reason);
        for (std::size_t j = 0; j < i; ++j)
            if (m.attributes[j].name == a.name)
                return invalid(why, "attribute \"" + a.name + "\" is given twice");
        std::string_view type = a.data_type;
        const auto dot = type.find('.');
        const std::string_view base = type.substr(0, dot);
        if ((base != "String" && base != "Number" && base != "Binary") || type.size() > 256 ||
            (dot != std::string_view::npos && dot + 1 == type.size()))
            return invalid(why, "attribute \"" + a.name + "\": the type \"" + a.data_type +
                                    "\" is not String, Number or Binary (optionally with .label)");
        if (a.value.empty()) return invalid(why, "attribute \"" + a.name + "\" has an empty value");
        if (base == "String" && !is_valid_sqs_text(a.value, bad))
            return invalid(why, "attribute \"" + a.name +
                                    "\": the value has a character SQS does not accept at byte " +
                                    std::to_string(bad));
        if (base == "Number" && !is_valid_number(a.value))
            return invalid(why,
                           "attribute \"" + a.name + "\": \"" + a.value + "\" is not a number");
    }
    if (fifo_queue) {
        if (m.group_id.empty())
            return invalid(why,
                           "a FIFO queue needs a group id on every message (Message::group_id)");
        if (m.delay.count() != 0)
            return invalid(why, "FIFO queues do not take a per-message delay");
    }
    if (!m.group_id.empty() && !is_valid_fifo_id(m.group_id))
        return invalid(why, "the group id must have 1 to 128 printable ASCII characters");
    if (!m.deduplication_id.empty()) {
        if (!fifo_queue) return invalid(why, "a deduplication id is only accepted by FIFO queues");
        if (!is_valid_fifo_id(m.deduplication_id))
            return invalid(why,
                           "the deduplication id must have 1 to 128 printable ASCII characters");
    }
    if (m.delay.count() < 0 || m.delay.count() > 900)
        return invalid(why, "the delay must be 0 to 900 seconds");
    return {};
}

Md5Hex md5_of_body(std::string_view body) noexcept {
    unsigned char digest[MD5_DIGEST_LENGTH];
    MD5(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
    Md5Hex out;
    to_hex(digest, out);
    return out;
}

void md5_of_bodies(std::span<const std::string_view> bodies, std::span<Md5Hex> out) noexcept {
    std::array<Md5Digest, 16> digests;
    for (std::size_t done = 0; done < bodies.size(); done += digests.size()) {
        const std::size_t n = std::min(digests.size(), bodies.size() - done);
        md5_many(bodies.subspan(done, n), std::span(digests).first(n));
        for (std::size_t i = 0; i < n; ++i) to_hex(digests[i].data(), out[done + i]);
    }
}

Md5Hex md5_of_attributes(const std::vector<MessageAttribute>& attributes) {
    std::vector<const MessageAttribute*> sorted;
    sorted.reserve(attributes.size());
    for (const auto& a : attributes) sorted.push_back(&a);
    std::sort(sorted.begin(), sorted.end(),
              [](const auto* a, const auto* b) { return a->name < b->name; });
    MD5_CTX ctx;
    MD5_Init(&ctx);
    auto put_length_prefixed = [&](std::string_view s) {
        const auto n = static_cast<std::uint32_t>(s.size());
        const unsigned char len[4] = {
            static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
            static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
        MD5_Update(&ctx, len, 4);
        MD5_Update(&ctx, s.data(), s.size());
    };
    for (const auto* a : sorted) {
        put_length_prefixed(a->name);
        put_length_prefixed(a->data_type);
        const unsigned char transport = is_binary_type(a->data_type) ? 2 : 1;
        MD5_Update(&ctx, &transport, 1);
        put_length_prefixed(a->value);
    }
    unsigned char digest[MD5_DIGEST_LENGTH];
    MD5_Final(digest, &ctx);
    Md5Hex out;
    to_hex(digest, out);
    return out;
}

namespace {

void write_message_fields(std::string& out, const Message& m) {
    out += "\"MessageBody\":";
    append_json_string(out, m.body);
    if (m.delay.count() != 0) {
        out += ",\"DelaySeconds\":";
        append_json_number(out, m.delay.count());
    }
    if (!m.group_id.empty()) {
        out += ",\"MessageGroupId\":";
        append_json_string(out, m.group_id);
    }
    if (!m.deduplication_id.empty()) {
        out += ",\"MessageDeduplicationId\":";
        append_json_string(out, m.deduplication_id);
    }
    if (!m.attributes.empty()) {
        out += ",\"MessageAttributes\":{";
        bool first = true;
        for (const auto& a : m.attributes) {
            if (!first) out += ',';
            first = false;
            append_json_string(out, a.name);
            out += ":{\"DataType\":";
            append_json_string(out, a.data_type);
            if (is_binary_type(a.data_type)) {
                out += ",\"BinaryValue\":\"";
                detail::append_base64(out, a.value);
                out += '"';
            } else {
                out += ",\"StringValue\":";
                append_json_string(out, a.value);
            }
            out += '}';
        }
        out += '}';
    }
    if (!m.aws_trace_header.empty()) {
        out +=
            ",\"MessageSystemAttributes\":{\"AWSTraceHeader\":{\"DataType\":\"String\","
            "\"StringValue\":";
        append_json_string(out, m.aws_trace_header);
        out += "}}";
    }
}

}  // namespace

void write_send_message(std::string& out, std::string_view queue_url, const Message& message) {
    out += "{\"QueueUrl\":";
    append_json_string(out, queue_url);
    out += ',';
    write_message_fields(out, message);
    out += '}';
}

void write_batch_begin(std::string& out, std::string_view queue_url) {
    out += "{\"QueueUrl\":";
    append_json_string(out, queue_url);
    out += ",\"Entries\":[";
}

void write_batch_entry(std::string& out, std::size_t id, const Message& message, bool first) {
    out += first ? "{\"Id\":\"" : ",{\"Id\":\"";
    char digits[20];
    const auto end = std::to_chars(digits, digits + sizeof digits, id).ptr;
    out.append(digits, end);
    out += "\",";
    write_message_fields(out, message);
    out += '}';
}

void write_batch_end(std::string& out) {
    out += "]}";
}

void write_get_queue_url(std::string& out, std::string_view queue_name) {
    out += "{\"QueueName\":";
    append_json_string(out, queue_name);
    out += '}';
}

void write_get_queue_attributes(std::string& out, std::string_view queue_url) {
    out += "{\"QueueUrl\":";
    append_json_string(out, queue_url);
    out += ",\"AttributeNames\":[\"MaximumMessageSize\",\"ContentBasedDeduplication\"]}";
}

namespace {

thread_local simdjson::dom::parser json_parser;
// The reply copied with room for what simdjson reads past its end, kept between replies: a
// padded copy of its own cost each request an allocation of the reply's size. A rare large
// reply's room is not kept.
thread_local std::string json_room;
constexpr std::size_t json_room_kept = 64 * 1024;

error_code parse_object(std::string_view json, simdjson::dom::object& obj) {
    json_room.assign(json);
    json_room.append(simdjson::SIMDJSON_PADDING, '\0');  // read, never used: zeros, not garbage
    // The element lives in the parser, which outlives this call; the copy is only read during
    // parse.
    const bool parsed =
        json_parser.parse(json_room.data(), json.size(), false).get_object().get(obj) ==
        simdjson::SUCCESS;
    if (json_room.capacity() > json_room_kept) std::string().swap(json_room);
    return parsed ? error_code{} : make_error_code(Errc::malformed_response);
}

bool read_string(simdjson::dom::object obj, std::string_view key, std::string& out) {
    std::string_view v;
    if (obj[key].get_string().get(v) != simdjson::SUCCESS) return false;
    out.assign(v);
    return true;
}

bool parse_entry_id(std::string_view v, std::size_t& id) {
    const auto r = std::from_chars(v.data(), v.data() + v.size(), id);
    return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

bool read_entry_id(simdjson::dom::object obj, std::size_t& id) {
    std::string_view v;
    if (obj["Id"].get_string().get(v) != simdjson::SUCCESS) return false;
    return parse_entry_id(v, id);
}

// A Successful entry's fields in one walk of its object: looked up by name, each of five
// names walked it again. Of a name given twice the first counts, as a lookup would have it.
// MessageId (and Id, when `with_id`) must be strings; the others are read when they are.
bool read_sent_entry(simdjson::dom::object obj, SentEntry& e, bool with_id) {
    enum : unsigned { id = 1, message_id = 2, body_md5 = 4, attributes_md5 = 8, sequence = 16 };
    unsigned seen = 0;
    auto first = [&seen](unsigned name) {
        const bool before = (seen & name) != 0;
        seen |= name;
        return !before;
    };
    bool id_ok = !with_id, message_id_ok = false;
    for (const simdjson::dom::key_value_pair field : obj) {
        const std::string_view key = field.key;
        std::string_view v;
        const bool text = field.value.get_string().get(v) == simdjson::SUCCESS;
        if (key == "MessageId") {
            if (first(message_id)) {
                message_id_ok = text;
                if (text) e.message_id.assign(v);
            }
        } else if (key == "MD5OfMessageBody") {
            if (first(body_md5) && text) e.md5_of_body = v;
        } else if (key == "MD5OfMessageAttributes") {
            if (first(attributes_md5) && text) e.md5_of_attributes = v;
        } else if (key == "SequenceNumber") {
            if (first(sequence) && text) e.sequence_number.assign(v);
        } else if (with_id && key == "Id") {
            if (first(id)) id_ok = text && parse_entry_id(v, e.id);
        }
    }
    return id_ok && message_id_ok;
}

}  // namespace

error_code parse_send_message_result(std::string_view json, SendResult& out) {
    simdjson::dom::object obj;
    if (auto ec = parse_object(json, obj)) return ec;
    SentEntry e;
    if (!read_sent_entry(obj, e, /*with_id=*/false)) return Errc::malformed_response;
    out.successful.push_back(std::move(e));
    return {};
}

error_code parse_send_message_batch_result(std::string_view json, SendResult& out) {
    simdjson::dom::object obj;
    if (auto ec = parse_object(json, obj)) return ec;
    simdjson::dom::array list;
    if (obj["Successful"].get_array().get(list) == simdjson::SUCCESS) {
        out.successful.reserve(out.successful.size() + list.size());  // not grown five times
        for (auto item : list) {
            simdjson::dom::object o;
            SentEntry e;
            if (item.get_object().get(o) != simdjson::SUCCESS ||
                !read_sent_entry(o, e, /*with_id=*/true))
                return Errc::malformed_response;
            out.successful.push_back(std::move(e));
        }
    }
    if (obj["Failed"].get_array().get(list) == simdjson::SUCCESS) {
        for (auto item : list) {
            simdjson::dom::object o;
            FailedEntry e;
            if (item.get_object().get(o) != simdjson::SUCCESS || !read_entry_id(o, e.id))
                return Errc::malformed_response;
            bool fault = false;
            if (o["SenderFault"].get_bool().get(fault) == simdjson::SUCCESS) e.sender_fault = fault;
            read_string(o, "Code", e.code);
            read_string(o, "Message", e.message);
            out.failed.push_back(std::move(e));
        }
    }
    return {};
}

error_code parse_get_queue_url_result(std::string_view json, std::string& queue_url) {
    simdjson::dom::object obj;
    if (auto ec = parse_object(json, obj)) return ec;
    if (!read_string(obj, "QueueUrl", queue_url) || queue_url.empty())
        return Errc::malformed_response;
    return {};
}

error_code parse_get_queue_attributes_result(std::string_view json, std::size_t& max_message_size,
                                             bool& content_based_deduplication) {
    simdjson::dom::object obj, attributes;
    if (auto ec = parse_object(json, obj)) return ec;
    max_message_size = 0;
    content_based_deduplication = false;
    if (obj["Attributes"].get_object().get(attributes) != simdjson::SUCCESS) return {};
    std::string_view v;
    if (attributes["MaximumMessageSize"].get_string().get(v) == simdjson::SUCCESS) {
        const auto r = std::from_chars(v.data(), v.data() + v.size(), max_message_size);
        if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return Errc::malformed_response;
    }
    if (attributes["ContentBasedDeduplication"].get_string().get(v) == simdjson::SUCCESS)
        content_based_deduplication = v == "true";
    return {};
}

bool is_throttling_code(std::string_view code) noexcept {
    return code == "ThrottlingException" || code == "RequestThrottled" || code == "Throttling" ||
           code == "TooManyRequestsException" || code == "RequestLimitExceeded" ||
           code == "AWS.SimpleQueueService.RequestThrottled" || code == "KmsThrottled" ||
           code == "SlowDown";
}

bool is_missing_queue_error(const Diagnostics& d) noexcept {
    return d.code.find("NonExistentQueue") != std::string::npos || d.code == "QueueDoesNotExist";
}

bool is_batch_refusal_of_one_entry(std::string_view code) noexcept {
    return code == "InvalidParameterValue" || code == "InvalidMessageContents" ||
           code == "BatchRequestTooLong" || code == "InvalidParameterValueException" ||
           code == "InvalidMessageContentsException";
}

bool is_clock_skew_error(const Diagnostics& d) noexcept {
    if (d.code == "RequestTimeTooSkewed" || d.code == "RequestExpired") return true;
    if (d.code == "InvalidSignatureException" || d.code == "SignatureDoesNotMatch")
        return d.message.find("Signature expired") != std::string::npos ||
               d.message.find("Signature not yet current") != std::string::npos;
    return false;
}

error_code parse_error_response(const HttpResponse& response, Diagnostics& out) {
    out.http_status = response.status;
    out.request_id = std::string(response.header("x-amzn-RequestId"));
    // x-amzn-query-error: "AWS.SimpleQueueService.NonExistentQueue;Sender"
    std::string_view query_error = response.header("x-amzn-query-error");
    simdjson::dom::object obj;
    if (!response.body.empty() && !parse_object(response.body, obj)) {
        std::string type;
        if (read_string(obj, "__type", type)) {
            const auto hash = type.rfind('#');
            out.code = hash == std::string::npos ? type : type.substr(hash + 1);
        }
        if (!read_string(obj, "message", out.message)) read_string(obj, "Message", out.message);
        out.service_message = out.message;
    }
    if (out.code.empty() && !query_error.empty())
        out.code = std::string(query_error.substr(0, query_error.find(';')));
    if (out.code.empty()) out.code = "HTTP " + std::to_string(response.status);
    if (response.status == 429 || is_throttling_code(out.code)) return Errc::throttled;
    if (response.status >= 500 || out.code == "ServiceUnavailable" || out.code == "InternalError" ||
        out.code == "InternalFailure")
        return Errc::service_unavailable;
    return Errc::service_error;
}

}  // namespace outbox::detail::sqs

namespace outbox {

std::string check_sqs_queue_url(std::string_view url, SqsQueueUrlParts* parts) {
    detail::sqs::QueueAddress address;
    std::string why;
    if (detail::sqs::parse_queue_url(url, address, why)) return why.empty() ? "not a URL" : why;
    if (parts != nullptr)
        *parts = {.name = address.name, .region = address.region, .fifo = address.fifo};
    return {};
}

std::string check_sqs_message(const Message& message, bool fifo_queue, bool check_body) {
    std::string why;
    if (detail::sqs::validate_message(message, fifo_queue, why, check_body) && why.empty())
        why = "SQS would refuse the message";
    return why;
}

std::size_t sqs_message_size(const Message& message) noexcept {
    return detail::sqs::message_size(message);
}

}  // namespace outbox
