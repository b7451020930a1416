#include "kafka_mock.hpp"

#include "peer_process.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <simdjson.h>

#include <sstream>
#include <stdexcept>

namespace outbox::test {

KafkaMockCluster::KafkaMockCluster(int brokers) {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);  // the host handle says nothing
    handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!handle_) throw std::runtime_error(std::string("mock cluster host: ") + err);
    cluster_ = rd_kafka_mock_cluster_new(handle_, brokers);
    if (!cluster_) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
}

KafkaMockCluster::~KafkaMockCluster() {
    if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
    if (handle_) rd_kafka_destroy(handle_);
}

std::string KafkaMockCluster::bootstrap() const {
    return rd_kafka_mock_cluster_bootstraps(cluster_);
}

void KafkaMockCluster::create_topic(const std::string& topic, int partitions,
                                    int replication_factor) {
    if (rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, replication_factor))
        throw std::runtime_error("mock: cannot create topic " + topic);
}

void KafkaMockCluster::broker_down(int broker_id) {
    rd_kafka_mock_broker_set_down(cluster_, broker_id);
}

void KafkaMockCluster::broker_up(int broker_id) {
    rd_kafka_mock_broker_set_up(cluster_, broker_id);
}

void KafkaMockCluster::set_leader(const std::string& topic, int partition, int broker_id) {
    rd_kafka_mock_partition_set_leader(cluster_, topic.c_str(), partition, broker_id);
}

constexpr int16_t produce_api_key = 0;  // RD_KAFKAP_Produce, not in the public headers

void KafkaMockCluster::push_produce_errors(const std::vector<int>& errors) {
    std::vector<rd_kafka_resp_err_t> errs;
    for (int e : errors) errs.push_back(static_cast<rd_kafka_resp_err_t>(e));
    rd_kafka_mock_push_request_errors_array(cluster_, produce_api_key, errs.size(), errs.data());
}

void KafkaMockCluster::set_topic_error(const std::string& topic, int error) {
    rd_kafka_mock_topic_set_error(cluster_, topic.c_str(), static_cast<rd_kafka_resp_err_t>(error));
}

std::vector<KafkaRecord> kcat_read(const std::string& bootstrap, const std::string& topic,
                                   const std::vector<std::string>& extra_args) {
    // kcat waits for a partition whose leader is away: bounded, so a test fails instead.
    std::vector<std::string> argv{"timeout", "120", "kcat",      "-b", bootstrap, "-C", "-t",
                                  topic,     "-o",  "beginning", "-e", "-J",      "-q"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    std::string out;
    if (const int rc = run_command(argv, out); rc != 0)
        throw std::runtime_error("kcat exited with " + std::to_string(rc) + ": " + out);
    std::vector<KafkaRecord> records;
    simdjson::dom::parser parser;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        simdjson::dom::element doc = parser.parse(line);
        KafkaRecord r;
        r.partition = static_cast<std::int32_t>(int64_t(doc["partition"]));
        r.offset = int64_t(doc["offset"]);
        if (auto key = doc["key"]; key.is_string()) r.key = std::string(std::string_view(key));
        if (auto payload = doc["payload"]; payload.is_string())
            r.payload = std::string(std::string_view(payload));
        if (auto headers = doc["headers"]; headers.is_array()) {
            simdjson::dom::array list = headers;
            for (std::size_t i = 0; i + 1 < list.size(); i += 2) {
                auto value = list.at(i + 1);
                r.headers.emplace_back(
                    std::string(std::string_view(list.at(i))),
                    value.is_string() ? std::string(std::string_view(value)) : std::string());
            }
        }
        records.push_back(std::move(r));
    }
    return records;
}

}  // namespace outbox::test
