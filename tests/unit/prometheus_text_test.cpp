// Prometheus' text format as outbox writes it: exact lines for a small page, label values
// escaped, a histogram cumulative in seconds, bounded target series — and every page checked
// by Prometheus' own parser (promtool check metrics, from Debian's prometheus package).
#include "catch.hpp"
#include "peer_process.hpp"

#include <outbox/prometheus_text.hpp>

#include <string>

namespace {

// promtool's verdict on a page: its output, empty when it has nothing to say.
std::string promtool_says(const std::string& page, int& status) {
    std::string out;
    status = outbox::test::run_command({"/bin/sh", "-c", "promtool check metrics 2>&1"}, out, page);
    return out;
}

std::size_t count(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (std::size_t at = 0; (at = text.find(part, at)) != std::string::npos; at += part.size())
        ++n;
    return n;
}

}  // namespace

TEST_CASE("counters and gauges: one HELP and TYPE per family, label values escaped") {
    outbox::PrometheusText t;
    t.counter("outbox_events_delivered_total", "Events delivered.", {}, 30);
    t.gauge("outbox_events_pending", "Pending.", {{"target", "https://q/a\"b\\c\nd"}}, 2);
    t.gauge("outbox_events_pending", "Pending.", {{"target", "plain"}}, 0);
    CHECK(t.text() ==
          "# HELP outbox_events_delivered_total Events delivered.\n"
          "# TYPE outbox_events_delivered_total counter\n"
          "outbox_events_delivered_total 30\n"
          "# HELP outbox_events_pending Pending.\n"
          "# TYPE outbox_events_pending gauge\n"
          "outbox_events_pending{target=\"https://q/a\\\"b\\\\c\\nd\"} 2\n"
          "outbox_events_pending{target=\"plain\"} 0\n");
    int status = -1;
    INFO(promtool_says(t.text(), status));
    CHECK(status == 0);
}

TEST_CASE("a destination's figures: counters, in flight and a cumulative latency histogram") {
    outbox::DestinationStats s;
    s.accepted = 5;
    s.delivered = 4;
    s.failed = 1;
    for (std::uint64_t us : {3u, 1500u, 1500u, 2000000u}) {
        ++s.latency.buckets[outbox::LatencyHistogram::bucket_of(us)];
        ++s.latency.count;
        s.latency.sum += std::chrono::microseconds(us);
    }
    outbox::PrometheusText t;
    outbox::add_destination_metrics(t, {{"destination", "orders"}}, s);
    const std::string page = t.text();
    CHECK(page.find("outbox_messages_delivered_total{destination=\"orders\"} 4\n") !=
          std::string::npos);
    // Up to 3 µs: 1; up to 2047 µs: 3; +Inf: all 4; the sum in seconds.
    CHECK(
        page.find(
            "outbox_delivery_latency_seconds_bucket{destination=\"orders\",le=\"0.000003\"} 1\n") !=
        std::string::npos);
    CHECK(
        page.find(
            "outbox_delivery_latency_seconds_bucket{destination=\"orders\",le=\"0.002047\"} 3\n") !=
        std::string::npos);
    CHECK(page.find(
              "outbox_delivery_latency_seconds_bucket{destination=\"orders\",le=\"+Inf\"} 4\n") !=
          std::string::npos);
    CHECK(page.find("outbox_delivery_latency_seconds_sum{destination=\"orders\"} 2.003003\n") !=
          std::string::npos);
    int status = -1;
    INFO(page);
    INFO(promtool_says(page, status));
    CHECK(status == 0);
}

TEST_CASE("an outbox's backlog: the largest targets named, the rest summed as (other)") {
    std::vector<outbox::TargetSummary> targets;
    for (int i = 0; i < 10; ++i) {
        outbox::TargetSummary s;
        s.target = "customer-" + std::to_string(i);
        s.pending = static_cast<std::uint64_t>(i);
        s.dead = i == 0 ? 7 : 0;
        targets.push_back(s);
    }
    outbox::OutboxStats stats;
    stats.delivered = 12;
    outbox::PrometheusText t;
    outbox::add_outbox_metrics(t, {}, stats, targets, 3);
    const std::string page = t.text();
    CHECK(count(page, "outbox_events_pending{") == 4);  // three named and (other)
    CHECK(page.find("outbox_events_pending{target=\"customer-9\"} 9\n") != std::string::npos);
    CHECK(page.find("outbox_events_dead{target=\"customer-0\"} 7\n") != std::string::npos);
    // Named: customer-9, -8 and -0 (7 dead; before customer-7's 7 pending, stably); the
    // other seven's 1 + 2 + ... + 7 pending are summed.
    CHECK(page.find("outbox_events_pending{target=\"(other)\"} 28\n") != std::string::npos);
    int status = -1;
    INFO(promtool_says(page, status));
    CHECK(status == 0);
}
