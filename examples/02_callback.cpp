// 02: send with completion callbacks; every send completes exactly once, delivered or failed.
//
//   02_callback QUEUE_URL
#include <outbox/credentials_providers.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s QUEUE_URL\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = outbox::make_default_credentials(io.get_executor());
    outbox::SqsDestination queue(io.get_executor(), config);

    int delivered = 0, failed = 0;
    for (int i = 1; i <= 25; ++i) {
        outbox::Message event;
        event.body = R"({"type":"invoice.paid","invoice":)" + std::to_string(i) + "}";
        event.attributes.push_back({"tenant", "String", "acme"});
        // The callback runs later on the io_context's thread, never inside async_send. The
        // 25 sends go out as SendMessageBatch requests of up to 10.
        queue.async_send(std::move(event), [&, i](boost::system::error_code ec, outbox::Receipt r) {
            if (ec) {
                ++failed;
                std::printf("invoice %d failed: %s (%s)\n", i, ec.message().c_str(),
                            r.diagnostics.message.c_str());
            } else {
                ++delivered;
            }
        });
    }
    queue.async_close(5s, [](boost::system::error_code) {});
    io.run();  // returns once every send and the close have completed
    const auto stats = queue.stats();
    std::printf("delivered %d, failed %d, in %llu requests\n", delivered, failed,
                static_cast<unsigned long long>(stats.requests));
    return failed == 0 && delivered == 25 ? 0 : 1;
}
