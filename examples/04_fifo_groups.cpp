// 04: a FIFO queue: order holds within each message group (one per customer here), even
// when requests are retried; deduplication ids make a re-sent event harmless.
//
//   04_fifo_groups QUEUE_URL      (a queue whose name ends in .fifo)
#include <outbox/credentials_providers.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FIFO_QUEUE_URL\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = outbox::make_default_credentials(io.get_executor());
    outbox::SqsDestination queue(io.get_executor(), config);
    if (!queue.is_fifo()) {
        std::fprintf(stderr, "%s is not a FIFO queue\n", argv[1]);
        return 2;
    }

    int failed = 0;
    for (const std::string customer : {"alice", "bob"}) {
        for (int step = 1; step <= 3; ++step) {
            outbox::Message event;
            event.body =
                R"({"customer":")" + customer + R"(","step":)" + std::to_string(step) + "}";
            event.group_id = customer;  // required on FIFO queues
            event.deduplication_id = customer + "-" + std::to_string(step);
            queue.async_send(std::move(event), [&, customer, step](boost::system::error_code ec,
                                                                   outbox::Receipt r) {
                if (ec) ++failed;
                std::printf("%s step %d: %s, sequence number %s\n", customer.c_str(), step,
                            ec ? ec.message().c_str() : "delivered", r.sequence_number.c_str());
            });
        }
    }
    queue.async_close(5s, [](boost::system::error_code) {});
    io.run();
    return failed == 0 ? 0 : 1;
}
