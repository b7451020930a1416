#include "aws/sigv4/sigv4_canonical.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace outbox::detail::sigv4 {
namespace {

using outbox::sigv4::PathRule;

constexpr std::array<bool, 256> make_unreserved() {
    std::array<bool, 256> t{};
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    t['-'] = t['_'] = t['.'] = t['~'] = true;
    return t;
}
constexpr std::array<bool, 256> unreserved = make_unreserved();

constexpr char upper_hex[] = "0123456789ABCDEF";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Writes %XX (uppercase hex) for `c` at `p`; returns the position after it.
char* write_escaped(char* p, unsigned char c) noexcept {
    p[0] = '%';
    p[1] = upper_hex[c >> 4];
    p[2] = upper_hex[c & 0xf];
    return p + 3;
}

bool is_kept(unsigned char c, bool keep_slash) noexcept {
    return unreserved[c] || (keep_slash && c == '/');
}

// One query parameter, as offsets into the scratch buffer (the buffer may grow while
// parameters are added, so views would dangle).
struct ParamRef {
    std::uint32_t key_at, key_len, value_at, value_len;
};

struct QueryScratch {
    std::string text;
    std::string decoded;
    std::vector<ParamRef> params;
};

QueryScratch& query_scratch() {
    thread_local QueryScratch s;
    return s;
}

void add_wire_param(QueryScratch& s, std::string_view part) {
    const std::size_t eq = part.find('=');
    const std::string_view key = part.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    ParamRef ref{};
    s.decoded.clear();
    append_percent_decoded(s.decoded, key);
    ref.key_at = static_cast<std::uint32_t>(s.text.size());
    append_uri_encoded(s.text, s.decoded, false);
    ref.key_len = static_cast<std::uint32_t>(s.text.size() - ref.key_at);
    s.decoded.clear();
    append_percent_decoded(s.decoded, value);
    ref.value_at = static_cast<std::uint32_t>(s.text.size());
    append_uri_encoded(s.text, s.decoded, false);
    ref.value_len = static_cast<std::uint32_t>(s.text.size() - ref.value_at);
    s.params.push_back(ref);
}

void add_encoded_param(QueryScratch& s, const EncodedQueryParam& p) {
    ParamRef ref{};
    ref.key_at = static_cast<std::uint32_t>(s.text.size());
    s.text.append(p.name);
    ref.key_len = static_cast<std::uint32_t>(p.name.size());
    ref.value_at = static_cast<std::uint32_t>(s.text.size());
    s.text.append(p.value);
    ref.value_len = static_cast<std::uint32_t>(p.value.size());
    s.params.push_back(ref);
}

struct PathScratch {
    std::vector<std::string_view> segments;
};

void append_normalized_encoded_path(std::string& out, std::string_view path) {
    thread_local PathScratch scratch;
    auto& segments = scratch.segments;
    segments.clear();
    bool trailing_slash = false;
    std::size_t pos = 0;
    while (pos <= path.size()) {
        std::size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        const std::string_view seg = path.substr(pos, end - pos);
        const bool last = end == path.size();
        if (seg == "..") {
            if (!segments.empty()) segments.pop_back();
            trailing_slash = last;
        } else if (seg == ".") {
            trailing_slash = last;
        } else if (seg.empty()) {
            trailing_slash = last && end > 0;
        } else {
            segments.push_back(seg);
            trailing_slash = false;
        }
        pos = end + 1;
    }
    if (segments.empty()) {
        out.push_back('/');
        return;
    }
    for (const std::string_view seg : segments) {
        out.push_back('/');
        append_uri_encoded(out, seg, false);
    }
    if (trailing_slash) out.push_back('/');
}

void append_s3_path(std::string& out, std::string_view path) {
    const std::size_t at = out.size();
    out.resize(at + 1 + 3 * path.size());
    char* p = out.data() + at;
    if (path.empty() || path.front() != '/') *p++ = '/';
    for (std::size_t i = 0; i < path.size(); ++i) {
        const auto c = static_cast<unsigned char>(path[i]);
        if (is_kept(c, true)) {
            *p++ = static_cast<char>(c);
        } else if (c == '%' && i + 2 < path.size() && hex_value(path[i + 1]) >= 0 &&
                   hex_value(path[i + 2]) >= 0) {
            p = write_escaped(p, static_cast<unsigned char>((hex_value(path[i + 1]) << 4) |
                                                            hex_value(path[i + 2])));
            i += 2;
        } else {
            p = write_escaped(p, c);
        }
    }
    out.resize(static_cast<std::size_t>(p - out.data()));
}

}  // namespace

void append_uri_encoded(std::string& out, std::string_view in, bool keep_slash) {
    // Size for the worst case (every byte escaped), write through a pointer, trim after.
    const std::size_t at = out.size();
    out.resize(at + 3 * in.size());
    char* p = out.data() + at;
    for (const char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_kept(c, keep_slash))
            *p++ = ch;
        else
            p = write_escaped(p, c);
    }
    out.resize(static_cast<std::size_t>(p - out.data()));
}

void append_percent_decoded(std::string& out, std::string_view in) {
    std::size_t run = 0;  // start of the pending run of bytes copied as they are
    for (std::size_t i = 0; i + 2 < in.size(); ++i) {
        if (in[i] != '%') continue;
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) continue;
        out.append(in.data() + run, i - run);
        out.push_back(static_cast<char>((hi << 4) | lo));
        i += 2;
        run = i + 1;
    }
    out.append(in.data() + run, in.size() - run);
}

void append_canonical_uri(std::string& out, std::string_view path, PathRule rule) {
    switch (rule) {
        case PathRule::s3:
            append_s3_path(out, path);
            return;
        case PathRule::encode_only:
            if (path.empty() || path.front() != '/') out.push_back('/');
            append_uri_encoded(out, path, true);
            return;
        case PathRule::normalize_and_encode:
            append_normalized_encoded_path(out, path);
            return;
    }
}

void append_canonical_query(std::string& out, std::string_view wire_query,
                            std::span<const EncodedQueryParam> extra) {
    if (wire_query.empty()) {
        // The pre-signed URL's own parameters usually come in order already: no copy, no sort.
        auto in_order = [](const EncodedQueryParam& a, const EncodedQueryParam& b) {
            return a.name < b.name || (a.name == b.name && a.value <= b.value);
        };
        bool sorted = true;
        for (std::size_t i = 1; i < extra.size() && sorted; ++i)
            sorted = in_order(extra[i - 1], extra[i]);
        if (sorted) {
            for (std::size_t i = 0; i < extra.size(); ++i) {
                if (i > 0) out.push_back('&');
                out.append(extra[i].name);
                out.push_back('=');
                out.append(extra[i].value);
            }
            return;
        }
    }
    QueryScratch& s = query_scratch();
    s.text.clear();
    s.params.clear();
    std::size_t pos = 0;
    while (pos < wire_query.size()) {
        std::size_t end = wire_query.find('&', pos);
        if (end == std::string_view::npos) end = wire_query.size();
        if (end > pos) add_wire_param(s, wire_query.substr(pos, end - pos));
        pos = end + 1;
    }
    for (const EncodedQueryParam& p : extra) add_encoded_param(s, p);

    const char* base = s.text.data();
    auto view = [base](std::uint32_t at, std::uint32_t len) {
        return std::string_view(base + at, len);
    };
    std::sort(s.params.begin(), s.params.end(), [&](const ParamRef& a, const ParamRef& b) {
        const std::string_view ka = view(a.key_at, a.key_len);
        const std::string_view kb = view(b.key_at, b.key_len);
        if (ka != kb) return ka < kb;
        return view(a.value_at, a.value_len) < view(b.value_at, b.value_len);
    });
    bool first = true;
    for (const ParamRef& p : s.params) {
        if (!first) out.push_back('&');
        first = false;
        out.append(view(p.key_at, p.key_len));
        out.push_back('=');
        out.append(view(p.value_at, p.value_len));
    }
}

void append_canonical_header_value(std::string& out, std::string_view value) {
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    std::size_t i = 0;
    std::size_t end = value.size();
    while (i < end && is_space(value[i])) ++i;
    while (end > i && is_space(value[end - 1])) --end;
    while (i < end) {
        std::size_t run_end = i;
        while (run_end < end && !is_space(value[run_end])) ++run_end;
        out.append(value.data() + i, run_end - i);
        if (run_end == end) break;
        out.push_back(' ');
        i = run_end;
        while (i < end && is_space(value[i])) ++i;
    }
}

}  // namespace outbox::detail::sigv4
