// Prometheus' text exposition format (0.0.4) of outbox's figures: a destination's counters and
// latency histogram, a router's targets with their breakers, an outbox's events and its
// backlog per target — for an application's own /metrics page, or `outbox relay --metrics`.
// Targets become label values: at most `max_targets` of them are named, the rest are summed
// under target="(other)", so a process with thousands of customers keeps its series bounded.
#pragma once

#include <outbox/destination_stats.hpp>
#include <outbox/latency_histogram.hpp>
#include <outbox/outbox.hpp>
#include <outbox/outbox_store.hpp>
#include <outbox/routing_destination.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox {

class PrometheusText {
  public:
    using Labels = std::vector<std::pair<std::string, std::string>>;

    void counter(std::string_view name, std::string_view help, const Labels& labels, double value);
    void gauge(std::string_view name, std::string_view help, const Labels& labels, double value);
    /// A latency histogram in seconds, with one bucket per power of two of microseconds.
    void histogram(std::string_view name, std::string_view help, const Labels& labels,
                   const LatencyHistogram& latency);
    /// The families in the order first added, each with its HELP and TYPE lines once.
    std::string text() const;

  private:
    struct Family {
        std::string name, help, type, samples;
    };
    Family& family(std::string_view name, std::string_view help, std::string_view type);
    void sample(std::string_view type, std::string_view name, std::string_view help,
                const Labels& labels, double value);
    std::vector<Family> families_;
};

/// outbox_messages_{accepted,delivered,failed,retried}_total, outbox_requests_total,
/// outbox_message_bytes_delivered_total, outbox_messages_in_flight and
/// outbox_delivery_latency_seconds, each with `labels`.
void add_destination_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                             const DestinationStats& stats);

/// Each target's figures with target="..." added to `labels` (no separate total: sum() over
/// the targets gives it), outbox_target_health (1 for the target's health="..." state) and
/// outbox_target_failures (consecutive). `max_targets` are named, those whose health is not
/// healthy first; the rest are summed under target="(other)", and targets forgotten as idle
/// under target="(forgotten)". A target moving into or out of "(other)" makes that series
/// go down: Prometheus reads it as a counter reset.
void add_routing_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                         const RoutingDestination& router, std::size_t max_targets = 500);

/// outbox_events_{enqueued,delivered,retried,dead_lettered}_total, outbox_events_in_flight,
/// and per target (the `max_targets` whose breaker is not healthy, then with the largest
/// backlog; the rest under "(other)") outbox_events_pending, outbox_events_dead and, from the
/// breakers the store keeps, outbox_target_health and outbox_target_failures.
void add_outbox_metrics(PrometheusText& out, const PrometheusText::Labels& labels,
                        const OutboxStats& stats, const std::vector<TargetSummary>& targets,
                        std::size_t max_targets = 500);

}  // namespace outbox
