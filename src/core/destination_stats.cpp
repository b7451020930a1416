#include <outbox/destination_stats.hpp>

#include <cstdio>

namespace outbox {
namespace {

std::string bytes_text(std::uint64_t n) {
    char buf[32];
    if (n < 1024)
        std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
    else if (n < 1024 * 1024)
        std::snprintf(buf, sizeof buf, "%.1f KiB", double(n) / 1024);
    else if (n < 1024ull * 1024 * 1024)
        std::snprintf(buf, sizeof buf, "%.1f MiB", double(n) / (1024 * 1024));
    else
        std::snprintf(buf, sizeof buf, "%.2f GiB", double(n) / (1024.0 * 1024 * 1024));
    return buf;
}

std::string duration_text(std::chrono::microseconds d) {
    char buf[32];
    const auto us = d.count();
    if (us < 1000)
        std::snprintf(buf, sizeof buf, "%lld us", static_cast<long long>(us));
    else if (us < 1000000)
        std::snprintf(buf, sizeof buf, "%.1f ms", double(us) / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%.2f s", double(us) / 1e6);
    return buf;
}

std::string number(std::uint64_t n) {
    return std::to_string(n);
}

}  // namespace

std::string describe(const DestinationStats& s) {
    std::string out = "accepted " + number(s.accepted) + " (" + bytes_text(s.bytes_accepted) +
                      "), delivered " + number(s.delivered) + " (" + bytes_text(s.bytes_delivered) +
                      "), failed " + number(s.failed) + ", in flight " + number(s.in_flight) + "\n";
    out += "retried " + number(s.retried) + ", staged " + number(s.staged) + ", requests " +
           number(s.requests) + ", waits for room " + number(s.waits_for_room) + "\n";
    const auto& l = s.latency;
    if (l.count == 0) {
        out += "latency: nothing delivered\n";
    } else {
        out += "latency (" + number(l.count) + " delivered): p50 " +
               duration_text(l.percentile(0.5)) + ", p90 " + duration_text(l.percentile(0.9)) +
               ", p99 " + duration_text(l.percentile(0.99)) + ", max " + duration_text(l.max) +
               ", mean " + duration_text(l.mean()) + "\n";
    }
    return out;
}

}  // namespace outbox
