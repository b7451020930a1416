// A standalone mock Kafka cluster for the CLI tests and the demo: librdkafka's mock brokers
// on 127.0.0.1. Prints {"port": N, "bootstrap": "..."} and serves until SIGTERM or SIGINT.
// Usage: kafka_mock_broker [--brokers N] [--topic NAME:PARTITIONS]...
// Topics not created up front are created on first use with 4 partitions.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
    int brokers = 3;
    rd_kafka_mock_cluster_t* cluster = nullptr;
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    for (int i = 1; i < argc; ++i)
        if (!std::strcmp(argv[i], "--brokers") && i + 1 < argc) brokers = std::atoi(argv[++i]);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk || !(cluster = rd_kafka_mock_cluster_new(rk, brokers))) {
        std::fprintf(stderr, "kafka_mock_broker: cannot start the mock cluster: %s\n", err);
        return 1;
    }
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--topic") != 0 || i + 1 >= argc) continue;
        const std::string spec = argv[++i];
        const auto colon = spec.find(':');
        const int partitions = colon == std::string::npos ? 4 : std::atoi(spec.c_str() + colon + 1);
        rd_kafka_mock_topic_create(cluster, spec.substr(0, colon).c_str(), partitions,
                                   brokers < 3 ? brokers : 3);
    }
    const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
    const std::string first = bootstrap.substr(0, bootstrap.find(','));
    const std::string port = first.substr(first.rfind(':') + 1);
    std::printf("{\"port\": %s, \"bootstrap\": \"%s\"}\n", port.c_str(), bootstrap.c_str());
    std::fflush(stdout);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    while (!stop_requested) pause();
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 0;
}
