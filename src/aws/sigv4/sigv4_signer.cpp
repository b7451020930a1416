#include <outbox/sigv4.hpp>
#include "aws/sigv4/sigv4_canonical.hpp"

#include "aws/sigv4/sha256.hpp"
#include "core/clock_range.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace outbox::sigv4 {
namespace {

using detail::sigv4::EncodedQueryParam;
using std::chrono::system_clock;

constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view empty_body_hash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";

// X-Amz-Date text; its first 8 characters are the scope date, so both come from one read.
struct AmzDate {
    std::array<char, 16> text{};
    std::string_view full() const { return {text.data(), text.size()}; }
    std::string_view date() const { return {text.data(), 8}; }
};

void put_digits(char* out, unsigned value, int width) {
    for (int i = width - 1; i >= 0; --i) {
        out[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
}

AmzDate to_amz_date(system_clock::time_point now) {
    using namespace std::chrono;
    const auto secs = floor<seconds>(now);
    // Requests signed within the same second share the text: skip the calendar arithmetic.
    thread_local sys_seconds last_secs{seconds::min()};
    thread_local AmzDate last;
    if (secs == last_secs) return last;
    const auto day = floor<days>(secs);
    const year_month_day ymd{day};
    const hh_mm_ss hms{secs - day};
    AmzDate d;
    char* p = d.text.data();
    put_digits(p, static_cast<unsigned>(static_cast<int>(ymd.year())), 4);
    put_digits(p + 4, static_cast<unsigned>(ymd.month()), 2);
    put_digits(p + 6, static_cast<unsigned>(ymd.day()), 2);
    p[8] = 'T';
    put_digits(p + 9, static_cast<unsigned>(hms.hours().count()), 2);
    put_digits(p + 11, static_cast<unsigned>(hms.minutes().count()), 2);
    put_digits(p + 13, static_cast<unsigned>(hms.seconds().count()), 2);
    p[15] = 'Z';
    last_secs = secs;
    last = d;
    return d;
}

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// Headers that a client or proxy may add or rewrite on the way, so signing them breaks
// requests (botocore and aws-c-auth leave the same ones out).
bool is_never_signed(std::string_view lower) {
    static constexpr std::string_view names[] = {
        "authorization",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    };
    for (const std::string_view n : names)
        if (lower == n) return true;
    return false;
}

struct HeaderRef {
    std::uint32_t name_at;
    std::uint32_t name_len;
    std::string_view value;
};

struct Scratch {
    std::string names;  // lower-cased header names
    std::vector<HeaderRef> headers;
    std::string header_block;
    std::string signed_headers;
    std::string canonical;
    std::string string_to_sign;
    std::string credential;  // X-Amz-Credential of a pre-signed URL, raw
    std::string encoded;     // the pre-signed URL's X-Amz-* values, URI-encoded
};

Scratch& scratch() {
    thread_local Scratch s;
    return s;
}

// Which headers the signer itself supplies, so the caller's copies are left out.
struct OwnHeaders {
    bool amz_date;
    bool content_sha256;
    bool security_token;
};

void add_header(Scratch& s, std::string_view name, std::string_view value) {
    HeaderRef ref{static_cast<std::uint32_t>(s.names.size()),
                  static_cast<std::uint32_t>(name.size()), value};
    for (const char c : name) s.names.push_back(ascii_lower(c));
    s.headers.push_back(ref);
}

// Fills s.header_block ("name:value\n" lines) and s.signed_headers ("a;b;c").
void build_headers(Scratch& s, const Request& req, OwnHeaders own, std::span<const Header> added) {
    s.names.clear();
    s.headers.clear();
    s.header_block.clear();
    s.signed_headers.clear();
    add_header(s, "host", req.host);
    for (const Header& h : req.headers) {
        const std::size_t at = s.names.size();
        add_header(s, h.name, h.value);
        const std::string_view lower(s.names.data() + at, h.name.size());
        const bool own_copy = lower == "host" || (own.amz_date && lower == "x-amz-date") ||
                              (own.content_sha256 && lower == "x-amz-content-sha256") ||
                              (own.security_token && lower == "x-amz-security-token");
        if (own_copy || is_never_signed(lower)) {
            s.headers.pop_back();
            s.names.resize(at);
        }
    }
    for (const Header& h : added) add_header(s, h.name, h.value);

    const char* base = s.names.data();
    auto name_of = [base](const HeaderRef& r) {
        return std::string_view(base + r.name_at, r.name_len);
    };
    // Insertion sort: stable, so repeated names keep their order, and no allocation.
    auto& v = s.headers;
    for (std::size_t i = 1; i < v.size(); ++i) {
        const HeaderRef cur = v[i];
        std::size_t j = i;
        while (j > 0 && name_of(cur) < name_of(v[j - 1])) {
            v[j] = v[j - 1];
            --j;
        }
        v[j] = cur;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string_view name = name_of(v[i]);
        const bool continues = i > 0 && name == name_of(v[i - 1]);
        if (continues) {
            s.header_block.back() = ',';  // replace the '\n' of the previous value
        } else {
            if (!s.signed_headers.empty()) s.signed_headers.push_back(';');
            s.signed_headers.append(name);
            s.header_block.append(name);
            s.header_block.push_back(':');
        }
        detail::sigv4::append_canonical_header_value(s.header_block, v[i].value);
        s.header_block.push_back('\n');
    }
}

void build_canonical_request(Scratch& s, const SignerConfig& config, const Request& req,
                             std::span<const EncodedQueryParam> query_extra,
                             std::string_view payload_hash) {
    std::string& c = s.canonical;
    c.clear();
    c.append(req.method);
    c.push_back('\n');
    detail::sigv4::append_canonical_uri(c, req.path, config.path_rule);
    c.push_back('\n');
    detail::sigv4::append_canonical_query(c, req.query, query_extra);
    c.push_back('\n');
    c.append(s.header_block);
    c.push_back('\n');
    c.append(s.signed_headers);
    c.push_back('\n');
    c.append(payload_hash);
}

void build_string_to_sign(Scratch& s, const AmzDate& date, std::string_view scope_suffix) {
    std::string& t = s.string_to_sign;
    // Assembled in a stack buffer and appended once: a string's push_back is a call here.
    char head[algorithm.size() + 1 + 16 + 1 + 8];
    char* p = std::copy(algorithm.begin(), algorithm.end(), head);
    *p++ = '\n';
    p = std::copy_n(date.full().data(), 16, p);
    *p++ = '\n';
    p = std::copy_n(date.date().data(), 8, p);
    t.assign(head, static_cast<std::size_t>(p - head));
    t.append(scope_suffix);
    t.push_back('\n');
    detail::append_hex(t, detail::sha256(s.canonical));
}

void append_credential(std::string& out, std::string_view access_key, const AmzDate& date,
                       std::string_view scope_suffix) {
    out.append(access_key);
    out.push_back('/');
    out.append(date.date());
    out.append(scope_suffix);
}

void fill_trace(SigningTrace* trace, const Scratch& s) {
    if (trace == nullptr) return;
    trace->canonical_request = s.canonical;
    trace->string_to_sign = s.string_to_sign;
}

}  // namespace

struct Signer::KeyCache {
    struct Entry {
        std::string secret;
        std::array<char, 8> date{};
        detail::HmacSha256 key;
        bool used = false;
    };
    static constexpr std::size_t capacity = 4;
    std::mutex mutex;
    std::vector<Entry> entries;  // grows to `capacity` as keys are derived: none while idle
    std::size_t next = 0;

    ~KeyCache() {
        for (Entry& e : entries) OPENSSL_cleanse(e.secret.data(), e.secret.size());
    }

    // The HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request",
    // derived once per (secret, date); region and service are fixed per Signer.
    detail::HmacSha256 get(std::string_view secret, std::string_view date, std::string_view region,
                           std::string_view service) {
        std::lock_guard lock(mutex);
        for (const Entry& e : entries) {
            if (e.used && std::string_view(e.date.data(), 8) == date && e.secret == secret)
                return e.key;
        }
        std::string k = "AWS4";
        k.append(secret);
        detail::Sha256Digest d = detail::HmacSha256(k).mac(date);
        d = detail::HmacSha256(d).mac(region);
        d = detail::HmacSha256(d).mac(service);
        d = detail::HmacSha256(d).mac("aws4_request");
        if (next == entries.size()) {
            entries.reserve(capacity);  // once: a secret is never moved and left behind
            entries.emplace_back();
        }
        Entry& e = entries[next];
        next = (next + 1) % capacity;
        e.secret.assign(secret);
        std::copy(date.begin(), date.end(), e.date.begin());
        e.key = detail::HmacSha256(d);
        e.used = true;
        OPENSSL_cleanse(k.data(), k.size());
        OPENSSL_cleanse(d.data(), d.size());
        return e.key;
    }
};

Signer::Signer(SignerConfig config)
    : config_(std::move(config)), cache_(std::make_unique<KeyCache>()) {
    if (config_.region.empty())
        throw std::invalid_argument("outbox::sigv4::Signer: region is empty");
    if (config_.service.empty())
        throw std::invalid_argument("outbox::sigv4::Signer: service is empty");
    scope_suffix_ = "/" + config_.region + "/" + config_.service + "/aws4_request";
}

Signer::~Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;

boost::system::error_code Signer::sign_headers(const Request& request,
                                               const Credentials& credentials,
                                               system_clock::time_point now, HeaderSignature& out,
                                               SigningTrace* trace) const {
    if (credentials.empty()) return Errc::missing_credentials;
    const AmzDate date = to_amz_date(now);
    const std::string_view payload =
        request.payload_hash.empty() ? empty_body_hash : request.payload_hash;
    out.amz_date.assign(date.full());
    out.content_sha256.clear();
    if (config_.send_content_sha256) out.content_sha256.assign(payload);

    const bool sign_token = credentials.has_session_token() && config_.sign_session_token;
    std::array<Header, 3> added;
    std::size_t n = 0;
    added[n++] = {"x-amz-date", out.amz_date};
    if (config_.send_content_sha256) added[n++] = {"x-amz-content-sha256", out.content_sha256};
    if (sign_token) added[n++] = {"x-amz-security-token", credentials.session_token};

    Scratch& s = scratch();
    build_headers(s, request, {true, config_.send_content_sha256, credentials.has_session_token()},
                  std::span<const Header>(added.data(), n));
    build_canonical_request(s, config_, request, {}, payload);
    build_string_to_sign(s, date, scope_suffix_);
    const detail::HmacSha256 key =
        cache_->get(credentials.secret_access_key, date.date(), config_.region, config_.service);

    out.signature.clear();
    detail::append_hex(out.signature, key.mac(s.string_to_sign));
    out.signed_headers.assign(s.signed_headers);
    std::string& a = out.authorization;
    a.clear();
    a.append(algorithm);
    a.append(" Credential=");
    append_credential(a, credentials.access_key_id, date, scope_suffix_);
    a.append(", SignedHeaders=");
    a.append(s.signed_headers);
    a.append(", Signature=");
    a.append(out.signature);
    fill_trace(trace, s);
    return {};
}

boost::system::error_code Signer::presign(const Request& request, const Credentials& credentials,
                                          system_clock::time_point now,
                                          std::chrono::seconds expires, PresignedQuery& out,
                                          SigningTrace* trace) const {
    if (expires < min_presign_expiry || expires > max_presign_expiry) return Errc::invalid_expiry;
    if (credentials.empty()) return Errc::missing_credentials;
    const AmzDate date = to_amz_date(now);
    const std::string_view payload =
        request.payload_hash.empty() ? unsigned_payload : request.payload_hash;

    Scratch& s = scratch();
    build_headers(s, request, {true, false, credentials.has_session_token()}, {});

    char expires_text[8];
    const auto [end, ec] =
        std::to_chars(std::begin(expires_text), std::end(expires_text), expires.count());
    const std::string_view expires_view(expires_text, static_cast<std::size_t>(end - expires_text));
    // Encode the X-Amz-* values once: the same text goes into the canonical query and the URL.
    // Offsets first, views after, because `encoded` grows while being filled.
    s.credential.clear();
    append_credential(s.credential, credentials.access_key_id, date, scope_suffix_);
    std::string& encoded = s.encoded;
    encoded.clear();
    detail::sigv4::append_uri_encoded(encoded, s.credential, false);
    const std::size_t token_at = encoded.size();
    detail::sigv4::append_uri_encoded(encoded, credentials.session_token, false);
    const std::size_t headers_at = encoded.size();
    detail::sigv4::append_uri_encoded(encoded, s.signed_headers, false);
    const std::string_view encoded_credential(encoded.data(), token_at);
    const std::string_view encoded_token(encoded.data() + token_at, headers_at - token_at);
    const std::string_view encoded_headers(encoded.data() + headers_at,
                                           encoded.size() - headers_at);

    const bool sign_token = credentials.has_session_token() && config_.sign_session_token;
    // In canonical (byte) order, which is also the order they are appended to the URL.
    // Algorithm, date and expiry are made of unreserved characters only.
    std::array<EncodedQueryParam, 6> params;
    std::size_t n = 0;
    params[n++] = {"X-Amz-Algorithm", algorithm};
    params[n++] = {"X-Amz-Credential", encoded_credential};
    params[n++] = {"X-Amz-Date", date.full()};
    params[n++] = {"X-Amz-Expires", expires_view};
    if (sign_token) params[n++] = {"X-Amz-Security-Token", encoded_token};
    params[n++] = {"X-Amz-SignedHeaders", encoded_headers};
    const std::span<const EncodedQueryParam> extra(params.data(), n);

    build_canonical_request(s, config_, request, extra, payload);
    build_string_to_sign(s, date, scope_suffix_);
    const detail::HmacSha256 key =
        cache_->get(credentials.secret_access_key, date.date(), config_.region, config_.service);
    out.signature.clear();
    detail::append_hex(out.signature, key.mac(s.string_to_sign));

    std::string& q = out.query;
    q.assign(request.query);
    auto append_param = [&q](std::string_view name, std::string_view value) {
        if (!q.empty()) q.push_back('&');
        q.append(name);
        q.push_back('=');
        q.append(value);
    };
    for (const EncodedQueryParam& p : extra) append_param(p.name, p.value);
    if (credentials.has_session_token() && !sign_token)
        append_param("X-Amz-Security-Token", encoded_token);
    append_param("X-Amz-Signature", out.signature);
    fill_trace(trace, s);
    return {};
}

PayloadHash payload_hash(std::string_view body) noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    const detail::Sha256Digest d = detail::sha256(body);
    PayloadHash h;
    for (std::size_t i = 0; i < d.size(); ++i) {
        h.hex[2 * i] = digits[d[i] >> 4];
        h.hex[2 * i + 1] = digits[d[i] & 0xf];
    }
    return h;
}

std::string format_amz_date(system_clock::time_point now) {
    return std::string(to_amz_date(now).full());
}

boost::system::error_code parse_amz_date(std::string_view text, system_clock::time_point& out) {
    using namespace std::chrono;
    if (text.size() != 16 || text[8] != 'T' || text[15] != 'Z') return Errc::invalid_timestamp;
    auto number = [&](std::size_t at, std::size_t len, int& value) {
        const auto [p, ec] = std::from_chars(text.data() + at, text.data() + at + len, value);
        return ec == std::errc{} && p == text.data() + at + len;
    };
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    for (std::size_t i : {0u, 4u, 6u, 9u, 11u, 13u})
        if (text[i] < '0' || text[i] > '9') return Errc::invalid_timestamp;
    if (!number(0, 4, y) || !number(4, 2, mo) || !number(6, 2, d) || !number(9, 2, h) ||
        !number(11, 2, mi) || !number(13, 2, s))
        return Errc::invalid_timestamp;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                             day{static_cast<unsigned>(d)}};
    if (!ymd.ok() || !detail::clock_holds_year(y) || h > 23 || mi > 59 || s > 59)
        return Errc::invalid_timestamp;
    out = sys_days{ymd} + hours{h} + minutes{mi} + seconds{s};
    return {};
}

}  // namespace outbox::sigv4
