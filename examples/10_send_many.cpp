// 10: many events at once. One co_await per send waits for each reply (and the batch's
// linger) in turn; async_send_all keeps up to N sends in flight, so the destination fills its
// batches, and hands back one outcome per event, in order.
//
//   10_send_many QUEUE_URL [COUNT]
#include <outbox/credentials_providers.hpp>
#include <outbox/send_all.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<int> send_events(outbox::Destination& queue, int count) {
    std::vector<outbox::Message> events(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i)
        events[static_cast<std::size_t>(i)].body =
            R"({"type":"invoice.issued","invoice":)" + std::to_string(i) + "}";
    const auto start = std::chrono::steady_clock::now();
    // 64 in flight: enough to fill 10-message batches on several connections at once.
    const std::vector<outbox::SendOutcome> outcomes =
        co_await outbox::async_send_all(queue, std::move(events), 64, asio::use_awaitable);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    int failed = 0;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (!outcomes[i].error) continue;
        ++failed;
        std::printf("event %zu failed: %s\n", i, outcomes[i].error.message().c_str());
    }
    std::printf("%d events: %d delivered, %d failed in %lld ms\n", count, count - failed, failed,
                static_cast<long long>(took.count()));
    auto [closed] = co_await queue.async_close(5s, asio::as_tuple(asio::use_awaitable));
    co_return failed == 0 && !closed ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc != 2 && argc != 3) {
        std::fprintf(stderr, "usage: %s QUEUE_URL [COUNT]\n", argv[0]);
        return 2;
    }
    const int count = argc == 3 ? std::stoi(argv[2]) : 2000;
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = outbox::make_default_credentials(io.get_executor());
    outbox::SqsDestination queue(io.get_executor(), config);
    int status = 1;
    asio::co_spawn(io, send_events(queue, count),
                   [&](std::exception_ptr error, int result) { status = error ? 1 : result; });
    io.run();
    return status;
}
