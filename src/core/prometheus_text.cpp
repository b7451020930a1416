#include <outbox/prometheus_text.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>

namespace outbox {

namespace {

void append_label_value(std::string& out, std::string_view value) {
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out.push_back(c);
    }
}

void append_labels(std::string& out, const PrometheusText::Labels& labels,
                   std::string_view extra_name = {}, std::string_view extra_value = {}) {
    if (labels.empty() && extra_name.empty()) return;
    out.push_back('{');
    bool first = true;
    auto one = [&](std::string_view name, std::string_view value) {
        if (!first) out.push_back(',');
        first = false;
        out.append(name);
        out += "=\"";
        append_label_value(out, value);
        out.push_back('"');
    };
    for (const auto& [name, value] : labels) one(name, value);
    if (!extra_name.empty()) one(extra_name, extra_value);
    out.push_back('}');
}

void append_number(std::string& out, double value) {
    char buffer[64];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, ec == std::errc() ? end : buffer);
}

PrometheusText::Labels with(PrometheusText::Labels labels, std::string name, std::string value) {
    labels.emplace_back(std::move(name), std::move(value));
    return labels;
}

}  // namespace

PrometheusText::Family& PrometheusText::family(std::string_view name, std::string_view help,
                                               std::string_view type) {
    for (auto& f : families_)
        if (f.name == name) return f;
    return families_.emplace_back(
        Family{std::string(name), std::string(help), std::string(type), {}});
}

void PrometheusText::sample(std::string_view type, std::string_view name, std::string_view help,
                            const Labels& labels, double value) {
    std::string& s = family(name, help, type).samples;
    s.append(name);
    append_labels(s, labels);
    s.push_back(' ');
    append_number(s, value);
    s.push_back('\n');
}

void PrometheusText::counter(std::string_view name, std::string_view help, const Labels& labels,
                             double value) {
    sample("counter", name, help, labels, value);
}

void PrometheusText::gauge(std::string_view name, std::string_view help, const Labels& labels,
                           double value) {
    sample("gauge", name, help, labels, value);
}

void PrometheusText::histogram(std::string_view name, std::string_view help, const Labels& labels,
                               const LatencyHistogram& latency) {
    std::string& s = family(name, help, "histogram").samples;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < LatencyHistogram::bucket_count; ++i) {
        cumulative += latency.buckets[i];
        // Octave boundaries only (every fourth bucket ends one), the last being +Inf.
        if (i % 4 != 3 || i + 1 == LatencyHistogram::bucket_count) continue;
        // Fixed notation, never the C locale's decimal comma.
        char le[32];
        const auto [le_end, le_ec] = std::to_chars(
            le, le + sizeof le - 1, static_cast<double>(LatencyHistogram::upper_bound(i)) / 1e6,
            std::chars_format::fixed, 6);
        *(le_ec == std::errc() ? le_end : le) = '\0';
        s.append(name).append("_bucket");
        append_labels(s, labels, "le", le);
        s.push_back(' ');
        append_number(s, static_cast<double>(cumulative));
        s.push_back('\n');
    }
    s.append(name).append("_bucket");
    append_labels(s, labels, "le", "+Inf");
    s.push_back(' ');
    append_number(s, static_cast<double>(latency.count));
    s.push_back('\n');
    s.append(name).append("_sum");
    append_labels(s, labels);
    s.push_back(' ');
    append_number(s, static_cast<double>(latency.sum.count()) / 1e6);
    s.push_back('\n');
    s.append(name).append("_count");
    append_labels(s, labels);
    s.push_back(' ');
    append_number(s, static_cast<double>(latency.count));
    s.push_back('\n');
}

std::string PrometheusText::text() const {
    std::string out;
    for (const auto& f : families_) {
        out += "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
        out += f.samples;
    }
    return out;
}

void add_destination_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                             const DestinationStats& s) {
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    out.counter("outbox_messages_accepted_total", "Messages given to async_send.", labels,
                d(s.accepted));
    out.counter("outbox_messages_delivered_total", "Messages the destination delivered.", labels,
                d(s.delivered));
    out.counter("outbox_messages_failed_total",
                "Messages that completed with an error (each went to the dead letters).", labels,
                d(s.failed));
    out.counter("outbox_messages_retried_total", "Attempts after a message's first.", labels,
                d(s.retried));
    out.counter("outbox_requests_total", "Requests sent (SQS).", labels, d(s.requests));
    out.counter("outbox_message_bytes_delivered_total", "Bytes of bodies delivered.", labels,
                d(s.bytes_delivered));
    out.gauge("outbox_messages_in_flight", "Messages accepted and not yet complete.", labels,
              d(s.in_flight));
    out.histogram("outbox_delivery_latency_seconds", "From async_send to delivery.", labels,
                  s.latency);
}

namespace {

void add_health(PrometheusText& out, const PrometheusText::Labels& labels, TargetHealth health,
                std::uint32_t failures) {
    for (TargetHealth h : {TargetHealth::healthy, TargetHealth::degraded, TargetHealth::open,
                           TargetHealth::disabled})
        out.gauge("outbox_target_health",
                  "1 for the target's health: healthy, degraded, open or disabled.",
                  with(labels, "health", to_string(h)), health == h ? 1 : 0);
    out.gauge("outbox_target_failures", "Consecutive failed messages of the target.", labels,
              failures);
}

}  // namespace

void add_routing_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                         const RoutingDestination& router, std::size_t max_targets) {
    // Targets in trouble are named first: they are the ones someone looks for.
    auto status = router.target_status();
    std::stable_partition(status.begin(), status.end(),
                          [](const TargetStatus& t) { return t.health != TargetHealth::healthy; });
    std::map<std::string, const TargetStatus*> named;
    for (std::size_t i = 0; i < status.size() && i < max_targets; ++i)
        named.emplace(status[i].target, &status[i]);
    DestinationStats other;
    bool any_other = false;
    for (const auto& [target, stats] : router.stats_by_target()) {
        if (named.count(target)) {
            add_destination_metrics(out, with(labels, "target", target), stats);
        } else {
            other += stats;
            any_other = true;
        }
    }
    if (any_other) add_destination_metrics(out, with(labels, "target", "(other)"), other);
    // Forgotten targets' figures stay counted (a sum over the targets is the router's).
    add_destination_metrics(out, with(labels, "target", "(forgotten)"), router.forgotten_stats());
    for (const auto& [target, t] : named)
        add_health(out, with(labels, "target", target), t->health, t->consecutive_failures);
}

void add_outbox_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                        const OutboxStats& s, const std::vector<TargetSummary>& targets,
                        std::size_t max_targets) {
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    out.counter("outbox_events_enqueued_total", "Events stored durably.", labels, d(s.enqueued));
    out.counter("outbox_events_delivered_total", "Events delivered and removed from the store.",
                labels, d(s.delivered));
    out.counter("outbox_events_retried_total", "Failed attempts rescheduled.", labels,
                d(s.retried));
    out.counter("outbox_events_dead_lettered_total", "Events that became dead letters.", labels,
                d(s.dead));
    out.gauge("outbox_events_in_flight", "Events handed to destinations, not yet settled.", labels,
              d(s.in_flight));
    std::vector<const TargetSummary*> order;
    for (const auto& t : targets) order.push_back(&t);
    // Targets whose breaker is not healthy first, then the largest backlogs.
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
        const bool a_failing = a->health != TargetHealth::healthy;
        const bool b_failing = b->health != TargetHealth::healthy;
        if (a_failing != b_failing) return a_failing;
        return a->pending + a->dead > b->pending + b->dead;
    });
    std::uint64_t other_pending = 0, other_dead = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
        if (i >= max_targets) {
            other_pending += order[i]->pending;
            other_dead += order[i]->dead;
            continue;
        }
        out.gauge("outbox_events_pending", "Events of the target not yet delivered nor dead.",
                  with(labels, "target", order[i]->target), d(order[i]->pending));
        out.gauge("outbox_events_dead", "Dead letters of the target kept in the store.",
                  with(labels, "target", order[i]->target), d(order[i]->dead));
        add_health(out, with(labels, "target", order[i]->target), order[i]->health,
                   order[i]->consecutive_failures);
    }
    if (order.size() > max_targets) {
        out.gauge("outbox_events_pending", "Events of the target not yet delivered nor dead.",
                  with(labels, "target", "(other)"), d(other_pending));
        out.gauge("outbox_events_dead", "Dead letters of the target kept in the store.",
                  with(labels, "target", "(other)"), d(other_dead));
    }
}

}  // namespace outbox
