// librdkafka's mock Kafka cluster (rdkafka_mock.h) in the test process: real brokers speaking
// the Kafka protocol on 127.0.0.1, with faults on demand. And kcat, the independent reader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace outbox::test {

class KafkaMockCluster {
  public:
    explicit KafkaMockCluster(int brokers = 3);
    ~KafkaMockCluster();
    KafkaMockCluster(const KafkaMockCluster&) = delete;
    KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;

    /// "127.0.0.1:P1,127.0.0.1:P2,..."
    std::string bootstrap() const;
    void create_topic(const std::string& topic, int partitions, int replication_factor = 3);
    void broker_down(int broker_id);
    void broker_up(int broker_id);
    void set_leader(const std::string& topic, int partition, int broker_id);
    /// The next Produce requests (to any broker) fail with these Kafka error codes, in order.
    void push_produce_errors(const std::vector<int>& errors);
    /// Metadata requests for `topic` answer with this error (e.g. 3, UNKNOWN_TOPIC_OR_PART).
    void set_topic_error(const std::string& topic, int error);

  private:
    rd_kafka_s* handle_ = nullptr;
    rd_kafka_mock_cluster_s* cluster_ = nullptr;
};

struct KafkaRecord {
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::optional<std::string> key;
    std::string payload;
    std::vector<std::pair<std::string, std::string>> headers;
};

/// Every record in `topic`, read from the beginning to the end with kcat (-C -e -J), within
/// two minutes.
/// Throws when kcat fails.
std::vector<KafkaRecord> kcat_read(const std::string& bootstrap, const std::string& topic,
                                   const std::vector<std::string>& extra_args = {});

}  // namespace outbox::test
