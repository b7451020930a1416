// 03: send from a program that has no event loop: a small thread pool runs outbox, and the
// main thread waits for each result.
//
//   03_blocking QUEUE_URL
#include <outbox/credentials_providers.hpp>
#include <outbox/send_blocking.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/thread_pool.hpp>

#include <cstdio>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s QUEUE_URL\n", argv[0]);
        return 2;
    }
    asio::thread_pool pool(1);  // outbox's I/O runs here; this thread only waits
    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = outbox::make_default_credentials(pool.get_executor());
    int status = 0;
    {
        outbox::SqsDestination queue(pool.get_executor(), config);
        outbox::Message event;
        event.body = R"({"type":"user.signed_up","user":"u-42"})";
        boost::system::error_code ec;
        const outbox::Receipt receipt = outbox::send_blocking(queue, std::move(event), ec);
        if (ec) {
            std::printf("failed: %s (%s)\n", ec.message().c_str(),
                        receipt.diagnostics.message.c_str());
            status = 1;
        } else {
            std::printf("delivered: message id %s\n", receipt.message_id.c_str());
        }
        if (outbox::close_blocking(queue, 5s)) status = 1;
    }
    pool.join();
    return status;
}
