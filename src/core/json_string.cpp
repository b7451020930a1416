#include <outbox/json_string.hpp>

#include "core/swar.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <bit>
#include <charconv>

namespace outbox {
namespace {

namespace swar = detail::swar;

// Length of the valid UTF-8 sequence at `s[i]`, or 0 if the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](std::size_t k) {
        return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    };
    if (b0 < 0x80) return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (b0 == 0xE0 && b1 < 0xA0) return 0;  // overlong
        if (b0 == 0xED && b1 > 0x9F) return 0;  // surrogate
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
        if (b0 == 0xF4 && b1 > 0x8F) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

// The first byte at or after `i` that is not copied as it is: '"', '\\', a control character
// or a byte of 0x80 or above (the start of a UTF-8 sequence, checked by the caller); or the
// end of `text`. Sixteen bytes at a time, then eight: a body is mostly such runs.
std::size_t skip_plain(std::string_view text, std::size_t i) {
    const char* p = text.data();
    const std::size_t n = text.size();
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        // Signed compare: bytes >= 0x80 are negative, so "< 0x20" also catches them.
        const __m128i special = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                             _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                          _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
        if (const int mask = _mm_movemask_epi8(special); mask != 0)
            return i + static_cast<std::size_t>(std::countr_zero(static_cast<unsigned>(mask)));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        const auto w = swar::load(p + i);
        if (const auto flags = swar::has_less(w, 0x20) | swar::has_byte(w, '"') |
                               swar::has_byte(w, '\\') | swar::has_high(w))
            return i + swar::first_flagged_byte(w, flags, [](unsigned char c) {
                       return c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
                   });
    }
    for (; i < n; ++i) {
        const auto c = static_cast<unsigned char>(p[i]);
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) return i;
    }
    return n;
}

}  // namespace

bool append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    bool valid = true;
    out.push_back('"');
    std::size_t run = 0;  // start of the pending run of bytes copied as they are
    std::size_t i = 0;
    while (i < text.size()) {
        i = skip_plain(text, i);
        if (i == text.size()) break;
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80) {
            const std::size_t len = utf8_sequence_length(text, i);
            if (len != 0) {
                i += len;
                continue;
            }
        }
        out.append(text.data() + run, i - run);
        switch (c) {
            case '"':
                out.append("\\\"");
                break;
            case '\\':
                out.append("\\\\");
                break;
            case '\n':
                out.append("\\n");
                break;
            case '\r':
                out.append("\\r");
                break;
            case '\t':
                out.append("\\t");
                break;
            case '\b':
                out.append("\\b");
                break;
            case '\f':
                out.append("\\f");
                break;
            default:
                if (c < 0x20) {
                    const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
                    out.append(esc, 6);
                } else {
                    out.append("\\ufffd");
                    valid = false;
                }
        }
        ++i;
        run = i;
    }
    out.append(text.data() + run, text.size() - run);
    out.push_back('"');
    return valid;
}

void append_json_number(std::string& out, std::int64_t value) {
    char buf[24];
    const auto [end, ec] = std::to_chars(std::begin(buf), std::end(buf), value);
    out.append(buf, static_cast<std::size_t>(end - buf));
}

}  // namespace outbox
