// A standalone mock Kafka cluster for the CLI tests, the demo and the failure drill:
// librdkafka's mock brokers on 127.0.0.1. Prints {"port": N, "bootstrap": "..."} and serves
// until SIGTERM or SIGINT.
// Usage: kafka_mock_broker [--brokers N] [--topic NAME:PARTITIONS]... [--commands]
// Topics not created up front are created on first use with 4 partitions.
// With --commands it reads fault commands from standard input, one per line, answering
// "ok" or "error: ..." on standard output, and exits at end of input:
//   down BROKER | up BROKER              a broker stops (connections refused) or comes back
//   errors CODE[,CODE...]                the next Produce requests answer these error codes
//   rtt BROKER MS                        every reply of that broker is held back MS
//   leader TOPIC PARTITION BROKER        move a partition's leadership
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) {
    stop_requested = 1;
}

std::string run_command(rd_kafka_mock_cluster_t* cluster, const std::string& line) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (verb == "down" || verb == "up") {
        int broker = 0;
        if (!(in >> broker)) return "error: " + verb + " BROKER";
        err = verb == "down" ? rd_kafka_mock_broker_set_down(cluster, broker)
                             : rd_kafka_mock_broker_set_up(cluster, broker);
    } else if (verb == "errors") {
        std::string list;
        in >> list;
        std::vector<rd_kafka_resp_err_t> codes;
        std::istringstream items(list);
        for (std::string item; std::getline(items, item, ',');)
            codes.push_back(static_cast<rd_kafka_resp_err_t>(std::atoi(item.c_str())));
        if (codes.empty()) return "error: errors CODE[,CODE...]";
        rd_kafka_mock_push_request_errors_array(cluster, 0 /* Produce */, codes.size(),
                                                codes.data());
    } else if (verb == "rtt") {
        int broker = 0, ms = 0;
        if (!(in >> broker >> ms)) return "error: rtt BROKER MS";
        err = rd_kafka_mock_broker_set_rtt(cluster, broker, ms);
    } else if (verb == "leader") {
        std::string topic;
        int partition = 0, broker = 0;
        if (!(in >> topic >> partition >> broker)) return "error: leader TOPIC PARTITION BROKER";
        err = rd_kafka_mock_partition_set_leader(cluster, topic.c_str(), partition, broker);
    } else {
        return "error: unknown command " + verb;
    }
    return err ? std::string("error: ") + rd_kafka_err2str(err) : "ok";
}
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
    bool commands = false;
    for (int i = 1; i < argc; ++i) commands = commands || !std::strcmp(argv[i], "--commands");
    if (commands) {
        for (std::string line; !stop_requested && std::getline(std::cin, line);) {
            if (line.empty()) continue;
            std::printf("%s\n", run_command(cluster, line).c_str());
            std::fflush(stdout);
        }
    } else {
        while (!stop_requested) pause();
    }
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 0;
}
