#include "sign_command.hpp"

#include "cli_io.hpp"

#include <outbox/json_string.hpp>
#include <outbox/msk_iam_token.hpp>
#include <outbox/sigv4.hpp>

#include <simdjson.h>

#include <iostream>
#include <optional>
#include <utility>

namespace outbox::cli {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// Thrown inside this file only, turned into the `error` text of sign_requests.
struct InputError {
    std::string message;
};

class RequestReader {
  public:
    RequestReader(object obj, std::size_t index) : obj_(obj), index_(index) {
        if (auto id = optional_string("id")) id_ = std::string(*id);
    }

    const std::string& id() const { return id_; }

    [[noreturn]] void fail(std::string_view field, std::string_view what) const {
        std::string m = "request " + std::to_string(index_);
        if (!id_.empty()) m += " (id \"" + id_ + "\")";
        m += ": field \"" + std::string(field) + "\": " + std::string(what);
        throw InputError{std::move(m)};
    }

    std::optional<std::string_view> optional_string(std::string_view field) const {
        element e;
        if (obj_[field].get(e) != simdjson::SUCCESS) return std::nullopt;
        std::string_view s;
        if (e.get_string().get(s) != simdjson::SUCCESS) fail(field, "must be a string");
        return s;
    }

    std::string_view string(std::string_view field) const {
        auto s = optional_string(field);
        if (!s) fail(field, "is missing");
        if (s->empty()) fail(field, "is empty");
        return *s;
    }

    std::optional<element> optional_element(std::string_view field) const {
        element e;
        if (obj_[field].get(e) != simdjson::SUCCESS) return std::nullopt;
        return e;
    }

  private:
    object obj_;
    std::size_t index_;
    std::string id_;
};

bool is_token_char(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_token_char(c)) return false;
    return true;
}

bool is_valid_payload_hash(std::string_view h) {
    if (h.size() == 64) {
        bool hex = true;
        for (char c : h) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        if (hex) return true;
    }
    // Literals such as UNSIGNED-PAYLOAD or STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
    if (h.empty()) return false;
    for (char c : h)
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

Credentials read_credentials(const RequestReader& r) {
    Credentials creds;
    auto e = r.optional_element("credentials");
    object c;
    if (!e || e->get_object().get(c) != simdjson::SUCCESS)
        r.fail("credentials", "must be an object with access_key and secret_key");
    RequestReader cr(c, 0);
    auto need = [&](std::string_view key) -> std::string {
        auto v = cr.optional_string(key);
        if (!v || v->empty()) r.fail("credentials." + std::string(key), "is missing or empty");
        return std::string(*v);
    };
    creds.access_key_id = need("access_key");
    creds.secret_access_key = need("secret_key");
    creds.session_token = std::string(cr.optional_string("token").value_or(""));
    return creds;
}

std::chrono::system_clock::time_point read_timestamp(const RequestReader& r) {
    std::chrono::system_clock::time_point when;
    if (sigv4::parse_amz_date(r.string("timestamp"), when))
        r.fail("timestamp", "must be YYYYMMDD'T'HHMMSS'Z', a real UTC date and time");
    return when;
}

// Amazon MSK's IAM token for `region` at `timestamp` (see msk_iam_token.hpp).
SignResult msk_iam_token(const RequestReader& r) {
    const std::string_view region = r.string("region");
    const Credentials creds = read_credentials(r);
    const auto when = read_timestamp(r);
    MskIamToken token;
    if (make_msk_iam_token(region, creds, when, token,
                           r.optional_string("user_agent").value_or(msk_iam_user_agent)))
        r.fail("region", "must be lowercase letters, digits and '-'");
    SignResult out;
    out.id = r.id();
    out.token = std::move(token.token);
    out.expires_at_ms = token.expires_at_ms;
    return out;
}

SignResult sign_one(const RequestReader& r) {
    enum class Mode { header, s3_header, s3_presign };
    const std::string_view mode_text = r.string("mode");
    Mode mode;
    if (mode_text == "msk-iam-token") return msk_iam_token(r);
    if (mode_text == "header")
        mode = Mode::header;
    else if (mode_text == "s3-header")
        mode = Mode::s3_header;
    else if (mode_text == "s3-presign")
        mode = Mode::s3_presign;
    else
        r.fail("mode", "must be \"header\", \"s3-header\", \"s3-presign\" or \"msk-iam-token\"");
    const bool s3 = mode != Mode::header;

    const std::string_view method = r.string("method");
    if (!is_token(method)) r.fail("method", "is not an HTTP method token");

    UrlParts url;
    if (std::string why; !split_url(r.string("url"), url, why)) r.fail("url", why);

    // Headers in order, duplicates kept; a Host header overrides the URL's authority.
    std::vector<std::pair<std::string, std::string>> header_storage;
    if (auto e = r.optional_element("headers")) {
        array list;
        if (e->get_array().get(list) != simdjson::SUCCESS)
            r.fail("headers", "must be an array of [name, value] pairs");
        std::size_t i = 0;
        for (element pair : list) {
            const std::string field = "headers[" + std::to_string(i++) + "]";
            array nv;
            std::string_view name, value;
            if (pair.get_array().get(nv) != simdjson::SUCCESS || nv.size() != 2 ||
                nv.at(0).get_string().get(name) != simdjson::SUCCESS ||
                nv.at(1).get_string().get(value) != simdjson::SUCCESS)
                r.fail(field, "must be a [name, value] pair of strings");
            if (!is_token(name)) r.fail(field, "header name is not a valid HTTP token");
            header_storage.emplace_back(name, value);
        }
    }
    std::string host = url.host_header;
    std::optional<std::string> content_sha256_header;
    std::vector<sigv4::Header> headers;
    for (const auto& [name, value] : header_storage) {
        if (iequals(name, "host")) {
            host = value;
            continue;
        }
        if (iequals(name, "x-amz-content-sha256")) content_sha256_header = value;
        headers.push_back({name, value});
    }

    // payload_hash wins, then an x-amz-content-sha256 header, then the body's hash.
    std::string payload_hash;
    if (auto h = r.optional_string("payload_hash")) {
        if (!is_valid_payload_hash(*h))
            r.fail("payload_hash",
                   "must be 64 lowercase hex digits or a literal such as UNSIGNED-PAYLOAD");
        payload_hash = *h;
    } else if (content_sha256_header) {
        if (!is_valid_payload_hash(*content_sha256_header))
            r.fail("headers", "x-amz-content-sha256 must be 64 lowercase hex digits or a literal");
        payload_hash = *content_sha256_header;
    } else if (mode != Mode::s3_presign) {
        payload_hash = sigv4::payload_hash(r.optional_string("body").value_or("")).view();
    }

    const std::string_view region = r.string("region");
    const std::string_view service =
        s3 ? r.optional_string("service").value_or("s3") : r.string("service");
    if (service.empty()) r.fail("service", "is empty");

    const Credentials creds = read_credentials(r);
    const auto when = read_timestamp(r);

    sigv4::Signer signer(
        {.region = std::string(region),
         .service = std::string(service),
         .path_rule = s3 ? sigv4::PathRule::s3 : sigv4::PathRule::normalize_and_encode,
         .send_content_sha256 = mode == Mode::s3_header});
    const sigv4::Request request{.method = method,
                                 .host = host,
                                 .path = url.path,
                                 .query = url.query,
                                 .headers = headers,
                                 .payload_hash = payload_hash};
    SignResult out;
    out.id = r.id();
    sigv4::SigningTrace trace;
    if (mode == Mode::s3_presign) {
        std::int64_t expires = 3600;
        if (auto e = r.optional_element("expires")) {
            if (e->get_int64().get(expires) != simdjson::SUCCESS)
                r.fail("expires", "must be an integer");
        }
        sigv4::PresignedQuery q;
        if (signer.presign(request, creds, when, std::chrono::seconds(expires), q, &trace))
            r.fail("expires", "must be from 1 to 604800 seconds");
        out.signature = q.signature;
        out.url = url.scheme + "://" + url.authority + (url.path.empty() ? "/" : url.path) + "?" +
                  q.query;
    } else {
        sigv4::HeaderSignature sig;
        if (auto ec = signer.sign_headers(request, creds, when, sig, &trace))
            r.fail("credentials", ec.message());
        out.signature = sig.signature;
        out.authorization = sig.authorization;
    }
    out.canonical_request = std::move(trace.canonical_request);
    out.string_to_sign = std::move(trace.string_to_sign);
    return out;
}

}  // namespace

bool sign_requests(std::string_view json, std::vector<SignResult>& results, std::string& error) {
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(json);
    element doc;
    if (auto err = parser.parse(padded).get(doc); err != simdjson::SUCCESS) {
        error = std::string("input is not valid JSON: ") + simdjson::error_message(err);
        return false;
    }
    array list;
    if (doc.get_array().get(list) != simdjson::SUCCESS) {
        error = "input must be a JSON array of request objects";
        return false;
    }
    try {
        std::size_t index = 0;
        for (element e : list) {
            object obj;
            if (e.get_object().get(obj) != simdjson::SUCCESS) {
                error = "request " + std::to_string(index) + ": must be a JSON object";
                return false;
            }
            results.push_back(sign_one(RequestReader(obj, index)));
            ++index;
        }
    } catch (const InputError& e) {
        error = e.message;
        return false;
    }
    return true;
}

std::string results_to_json(const std::vector<SignResult>& results) {
    using outbox::append_json_string;
    std::string out = "[";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const SignResult& r = results[i];
        out += i == 0 ? "\n  {" : ",\n  {";
        auto field = [&out](std::string_view name, std::string_view value, bool first = false) {
            if (!first) out += ", ";
            append_json_string(out, name);
            out += ": ";
            append_json_string(out, value);
        };
        field("id", r.id, true);
        if (!r.token.empty()) {
            field("token", r.token);
            out += ", \"expires_at_ms\": " + std::to_string(r.expires_at_ms) + "}";
            continue;
        }
        field("canonical_request", r.canonical_request);
        field("string_to_sign", r.string_to_sign);
        field("signature", r.signature);
        if (r.url.empty())
            field("authorization", r.authorization);
        else
            field("url", r.url);
        out += "}";
    }
    out += results.empty() ? "]\n" : "\n]\n";
    return out;
}

int run_sign(int argc, char** argv) {
    std::string_view source = "-";
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            std::cout
                << "usage: outbox sign [FILE|-]\n"
                   "Reads a JSON array of request descriptions (FILE, or standard input) and\n"
                   "prints each one's canonical request, string to sign and signature; with\n"
                   "\"mode\": \"msk-iam-token\" (region, credentials, timestamp), Amazon MSK's\n"
                   "IAM token and its expiry instead.\n";
            return 0;
        }
        if (a.size() > 1 && a.front() == '-')
            return usage_error("sign: unknown option " + std::string(a));
        if (i != argc - 1) return usage_error("sign: takes at most one FILE");
        source = a;
    }
    std::string input, error;
    if (!read_input(source, input, error)) return usage_error("sign: " + error);
    std::vector<SignResult> results;
    if (!sign_requests(input, results, error)) return usage_error("sign: " + error);
    std::cout << results_to_json(results);
    return 0;
}

}  // namespace outbox::cli
