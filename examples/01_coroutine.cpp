// 01: send events from a C++20 coroutine, one co_await per message.
//
//   01_coroutine QUEUE_URL
//
// Credentials come from the default chain (AWS_ACCESS_KEY_ID..., profiles, metadata). With a
// local emulator, AWS_REGION names the region and AWS_ENDPOINT_URL_SQS where requests go: the
// library reads both, as every AWS SDK does (docs/configuration.md).
#include <outbox/credentials_providers.hpp>
#include <outbox/send_error.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<int> send_events(outbox::Destination& queue) {
    int failed = 0;
    for (int i = 1; i <= 3; ++i) {
        outbox::Message event;
        event.body = R"({"type":"order.created","order":)" + std::to_string(i) + "}";
        // With no token, async_send is an awaitable: the Receipt comes back, and a failure
        // throws SendError, which keeps the Receipt (what the service said, the attempts).
        // asio::as_tuple(asio::use_awaitable) would give the error as a value instead.
        try {
            const outbox::Receipt receipt = co_await queue.async_send(std::move(event));
            std::printf("order %d delivered: message id %s after %u attempt(s)\n", i,
                        receipt.message_id.c_str(), receipt.attempts);
        } catch (const outbox::SendError& e) {
            ++failed;
            std::printf("order %d failed after %u attempt(s): %s\n", i, e.receipt().attempts,
                        e.what());
        }
    }
    // Close flushes what is still queued, within the deadline; it throws if that failed.
    co_await queue.async_close(5s);
    co_return failed == 0 ? 0 : 1;
}

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

    int status = 1;
    asio::co_spawn(io, send_events(queue),
                   [&](std::exception_ptr error, int result) { status = error ? 1 : result; });
    io.run();
    return status;
}
