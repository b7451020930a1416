// 07: fan-out: every event to an SQS queue and a Kafka topic at once, with one outcome per
// destination. A failure at one does not cancel the other.
//
//   07_fan_out QUEUE_URL BOOTSTRAP TOPIC      (the Kafka broker without TLS, a local one)
#include <outbox/credentials_providers.hpp>
#include <outbox/kafka_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<int> publish(outbox::Destination& queue, outbox::Destination& topic) {
    int failed = 0;
    for (int i = 1; i <= 5; ++i) {
        outbox::Message event;
        event.body = R"({"type":"price.changed","sku":"sku-)" + std::to_string(i) + R"("})";
        // wait_for_all: both sends run to completion, whatever the other's outcome.
        auto [order, queue_error, queue_receipt, topic_error, topic_receipt] =
            co_await asio::experimental::make_parallel_group(
                queue.async_send(event, asio::deferred), topic.async_send(event, asio::deferred))
                .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        std::printf("sku-%d: queue %s, topic %s (partition %d)\n", i,
                    queue_error ? queue_error.message().c_str() : "delivered",
                    topic_error ? topic_error.message().c_str() : "delivered",
                    topic_receipt.partition);
        failed += (queue_error ? 1 : 0) + (topic_error ? 1 : 0);
    }
    co_await queue.async_close(5s, asio::deferred);
    co_await topic.async_close(5s, asio::deferred);
    co_return failed == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s QUEUE_URL BOOTSTRAP TOPIC\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    outbox::SqsDestinationConfig sqs;
    sqs.queue_url = argv[1];
    sqs.credentials = outbox::make_default_credentials(io.get_executor());
    outbox::SqsDestination queue(io.get_executor(), sqs);

    outbox::KafkaDestinationConfig kafka;
    kafka.bootstrap_servers = argv[2];
    kafka.topic = argv[3];
    kafka.security = outbox::KafkaSecurity::plaintext;
    outbox::KafkaDestination topic(io.get_executor(), kafka);

    int status = 1;
    asio::co_spawn(io, publish(queue, topic),
                   [&](std::exception_ptr e, int r) { status = e ? 1 : r; });
    io.run();
    return status;
}
