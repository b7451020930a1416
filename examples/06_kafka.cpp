// 06: events to a Kafka topic: SASL PLAIN over TLS by default, no partition key, partitions
// balanced by bytes; each receipt says where the event landed.
//
//   06_kafka BOOTSTRAP TOPIC                    (a local broker without TLS or SASL)
//   06_kafka BOOTSTRAP TOPIC USER PASSWORD_FILE  (SASL_SSL, the system's CAs)
#include <outbox/kafka_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <fstream>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 3 && argc != 5) {
        std::fprintf(stderr, "usage: %s BOOTSTRAP TOPIC [USER PASSWORD_FILE]\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    outbox::KafkaDestinationConfig config;
    config.bootstrap_servers = argv[1];
    config.topic = argv[2];
    if (argc == 5) {
        config.security = outbox::KafkaSecurity::sasl_ssl;  // the default, said out loud
        config.sasl_username = argv[3];
        std::ifstream secret(argv[4]);
        std::getline(secret, config.sasl_password);  // never on the command line
    } else {
        config.security = outbox::KafkaSecurity::plaintext;
    }
    // To have outbox create a missing topic through the Admin API, give its shape:
    //   config.partitions = 6; config.replication_factor = 3;
    // Without them the broker's auto-creation is relied on (the local mock cluster has no
    // Admin API, and creates topics on first use).
    outbox::KafkaDestination topic(io.get_executor(), config);

    int failed = 0;
    for (int i = 1; i <= 6; ++i) {
        outbox::Message event;
        event.body = R"({"type":"shipment.dispatched","shipment":)" + std::to_string(i) + "}";
        event.attributes.push_back({"source", "String", "warehouse-7"});  // a Kafka header
        topic.async_send(std::move(event), [&, i](boost::system::error_code ec, outbox::Receipt r) {
            if (ec) {
                ++failed;
                std::printf("shipment %d failed: %s (%s)\n", i, ec.message().c_str(),
                            r.diagnostics.message.c_str());
            } else {
                std::printf("shipment %d: %s partition %d offset %lld\n", i, r.topic.c_str(),
                            r.partition, static_cast<long long>(r.offset));
            }
        });
    }
    topic.async_close(10s, [](boost::system::error_code) {});
    io.run();
    return failed == 0 ? 0 : 1;
}
