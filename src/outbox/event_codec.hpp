// What the stores share: times in milliseconds, and how a stored event's message attributes
// are kept in one column (SQLite): a count, then for each the
// name, type and value, each as a 32-bit little-endian length and its bytes. Private to the
// library; decode is fuzzed (tests/fuzz/fuzz_event_codec.cpp).
#pragma once

#include <outbox/message.hpp>
#include <outbox/outbox_store.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::detail {

/// Times as both stores keep them: milliseconds since the epoch.
inline std::int64_t to_ms(SystemTime t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline SystemTime from_ms(std::int64_t ms) {
    return SystemTime(
        std::chrono::duration_cast<SystemTime::duration>(std::chrono::milliseconds(ms)));
}

inline void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

/// Appends the encoding of `attributes` to `out`; nothing when there are none.
inline void encode_attributes(const std::vector<MessageAttribute>& attributes, std::string& out) {
    if (attributes.empty()) return;
    put_u32(out, static_cast<std::uint32_t>(attributes.size()));
    for (const auto& a : attributes)
        for (const std::string* part : {&a.name, &a.data_type, &a.value}) {
            put_u32(out, static_cast<std::uint32_t>(part->size()));
            out.append(*part);
        }
}

/// Decodes what encode_attributes wrote. False (and `out` as far as it got) for bytes that
/// are not such an encoding: a damaged row is reported, never read past its end.
inline bool decode_attributes(std::string_view in, std::vector<MessageAttribute>& out) {
    auto get_u32 = [&](std::uint32_t& v) {
        if (in.size() < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i)
            v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
        in.remove_prefix(4);
        return true;
    };
    std::uint32_t count = 0;
    if (!get_u32(count) || count > in.size() / 12) return false;  // 12: three empty lengths
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        MessageAttribute a;
        for (std::string* part : {&a.name, &a.data_type, &a.value}) {
            std::uint32_t len = 0;
            if (!get_u32(len) || len > in.size()) return false;
            part->assign(in.substr(0, len));
            in.remove_prefix(len);
        }
        out.push_back(std::move(a));
    }
    return in.empty();
}

}  // namespace outbox::detail
