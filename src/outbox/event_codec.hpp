// What the stores share: times in milliseconds, breakers beside summaries, and how a stored event's
// message attributes are kept in one column (SQLite): a count, then for each the name, type and
// value, each as a 32-bit little-endian length and its bytes. Private to the library; decode is
// fuzzed (tests/fuzz/fuzz_event_codec.cpp).
#pragma once

#include <outbox/message.hpp>
#include <outbox/outbox_store.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::detail {

/// Times as both stores keep them: milliseconds since the epoch.
inline std::int64_t to_ms(SystemTime t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline SystemTime from_ms(std::int64_t ms) {
    // A damaged or hand-edited row may hold anything: clamped to what nanoseconds hold.
    constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max() / 1'000'000;
    ms = std::clamp<std::int64_t>(ms, -most, most);
    return SystemTime(
        std::chrono::duration_cast<SystemTime::duration>(std::chrono::milliseconds(ms)));
}

/// A kept breaker's health from its name (to_string); a name not known reads as open.
inline TargetHealth health_from_name(std::string_view name) {
    for (TargetHealth h : {TargetHealth::healthy, TargetHealth::degraded, TargetHealth::open,
                           TargetHealth::disabled})
        if (name == to_string(h)) return h;
    return TargetHealth::open;
}

/// Adds kept breakers to their targets' summaries (a target with none gets one), in target order.
inline void merge_breakers(std::vector<TargetSummary>& summaries,
                           std::vector<TargetBreakerState> breakers) {
    for (auto& b : breakers) {
        auto it = std::find_if(summaries.begin(), summaries.end(),
                               [&](const TargetSummary& t) { return t.target == b.target; });
        if (it == summaries.end()) {
            summaries.emplace_back();
            it = summaries.end() - 1;
            it->target = std::move(b.target);
        }
        it->health = b.health;
        it->consecutive_failures = b.consecutive_failures;
        it->next_probe_at = b.next_probe_at;
        if (it->last_error.empty()) it->last_error = std::move(b.last_error);
    }
    std::sort(summaries.begin(), summaries.end(),
              [](const TargetSummary& a, const TargetSummary& b) { return a.target < b.target; });
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
