// 09: one destination in front of many: each tenant's events go to the tenant's own queue,
// looked up per message; each queue's destination is made on first use and kept. Failures
// of any of them reach one dead-letter handler, which parks them. The tenant travels in
// Message::target, which is never sent: the tenant's queue sees only the event.
//
//   09_routing QUEUE_URL_FOR_ACME QUEUE_URL_FOR_GLOBEX
#include <outbox/credentials_providers.hpp>
#include <outbox/routing_destination.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s QUEUE_URL_FOR_ACME QUEUE_URL_FOR_GLOBEX\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    const std::map<std::string, std::string> queue_of{{"acme", argv[1]}, {"globex", argv[2]}};
    auto credentials = outbox::make_default_credentials(io.get_executor());

    outbox::RoutingDestinationConfig config;
    config.route = [&](const outbox::Message& m) -> std::string {
        const auto it = queue_of.find(m.target);
        return it == queue_of.end() ? std::string() : it->second;  // none: Errc::no_route
    };
    config.make_destination = [&](const std::string& queue_url) {
        outbox::SqsDestinationConfig sqs;
        sqs.queue_url = queue_url;
        sqs.credentials = credentials;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), sqs);
    };
    outbox::RoutingDestination router(io.get_executor(), config);
    int parked = 0;
    router.set_dead_letter_handler([&](outbox::DeadLetter&& letter) {
        // A real backend would write it to a table for a later retry or a human.
        ++parked;
        std::printf("parked: %s (%s) after %u attempt(s): %s\n", letter.message.body.c_str(),
                    letter.error.message().c_str(), letter.receipt.attempts,
                    letter.receipt.diagnostics.message.c_str());
    });

    for (const std::string tenant : {"acme", "globex", "acme", "initech"}) {
        outbox::Message event;
        event.body = R"({"tenant":")" + tenant + R"(","type":"plan.upgraded"})";
        event.target = tenant;
        router.async_send(std::move(event), [](boost::system::error_code, outbox::Receipt) {});
    }
    router.async_close(5s, [](boost::system::error_code) {});
    io.run();
    for (const auto& [queue, stats] : router.stats_by_target())
        std::printf("%s: delivered %llu\n", queue.c_str(),
                    static_cast<unsigned long long>(stats.delivered));
    // initech has no queue: exactly one message parked, three delivered.
    const auto total = router.stats();
    return parked == 1 && total.delivered == 3 ? 0 : 1;
}
