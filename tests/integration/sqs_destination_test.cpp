// SqsDestination against a real local SQS (fauxqs), behind a proxy that checks every
// signature with botocore and injects faults on a seeded schedule. Messages are read back
// with an independent client (the AWS SDK for JavaScript v3).
#include "catch.hpp"
#include "destination_runs.hpp"
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"
#include "test_http_server.hpp"
#include "throwing_credentials.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/send_all.hpp>
#include <outbox/send_blocking.hpp>
#include <outbox/send_error.hpp>
#include <outbox/sqs_destination.hpp>
#include "aws/sqs/sqs_protocol.hpp"

#include <simdjson.h>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using outbox::test::check_accounted;
using outbox::test::close_destination;
using outbox::test::create_queue;
using outbox::test::DeadLetters;
using outbox::test::fauxqs;
using outbox::test::Outcome;
using outbox::test::PeerProcess;
using outbox::test::peers_dir;
using outbox::test::send_all;
using outbox::test::text_message;

namespace {

const std::string access_key = "AKIDOUTBOXTEST";
const std::string secret_key = "outbox-test-secret";

struct ReadBack {
    std::string body;
    std::string md5_of_attributes;
    std::string group_id;
    std::map<std::string, std::pair<std::string, std::string>> attributes;  // name -> (type, value)
};

std::vector<ReadBack> receive(const std::string& queue_url, std::size_t count, int seconds = 20) {
    const std::string out = outbox::test::receive_json(queue_url, count, seconds);
    simdjson::dom::parser parser;
    simdjson::dom::array list = parser.parse(out).get_array();
    std::vector<ReadBack> messages;
    for (simdjson::dom::object m : list) {
        ReadBack r;
        r.body = std::string(std::string_view(m["body"]));
        if (m["md5_of_attributes"].is_string())
            r.md5_of_attributes = std::string(std::string_view(m["md5_of_attributes"]));
        if (m["group_id"].is_string()) r.group_id = std::string(std::string_view(m["group_id"]));
        for (auto [name, v] : simdjson::dom::object(m["attributes"]))
            r.attributes[std::string(name)] = {std::string(std::string_view(v["type"])),
                                               std::string(std::string_view(v["value"]))};
        messages.push_back(std::move(r));
    }
    return messages;
}

// The SigV4-checking proxy in front of fauxqs, with this file's key pair.
struct Proxy : outbox::test::SigV4Proxy {
    explicit Proxy(const std::vector<std::string>& extra = {})
        : SigV4Proxy(fauxqs().port(), "sqs", access_key, secret_key, extra) {}
};

outbox::SqsDestinationConfig config_for(asio::any_io_executor ex, const std::string& queue_url,
                                        const Proxy& proxy) {
    outbox::SqsDestinationConfig c;
    c.queue_url = queue_url;
    c.endpoint = proxy.process.url();
    c.region = "us-east-1";
    c.credentials =
        outbox::make_static_credentials(ex, outbox::Credentials{access_key, secret_key});
    c.retry.base_delay = std::chrono::milliseconds(5);
    c.retry.max_delay = std::chrono::milliseconds(200);
    return c;
}

}  // namespace

TEST_CASE("single and batched sends arrive, signed correctly", "[sqs]") {
    const std::string queue = create_queue("outbox-basic");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));

    // One on its own first: SendMessage.
    auto single = send_all(io, sqs, {text_message("{\"order\":0}")});
    REQUIRE_FALSE(single[0].ec);
    CHECK_FALSE(single[0].receipt.message_id.empty());
    CHECK(single[0].receipt.attempts == 1);

    std::vector<outbox::Message> batch;
    for (int i = 1; i <= 45; ++i)
        batch.push_back(text_message("{\"order\":" + std::to_string(i) + "}"));
    auto outcomes = send_all(io, sqs, std::move(batch));
    std::set<std::string> ids;
    for (auto& o : outcomes) {
        REQUIRE_FALSE(o.ec);
        CHECK(o.completions == 1);
        ids.insert(o.receipt.message_id);
    }
    CHECK(ids.size() == 45);
    // 45 messages in batches of up to 10: a handful of requests, not 45.
    CHECK(sqs.stats().requests <= 2 + 2 + 10);
    CHECK(sqs.stats().delivered == 46);
    CHECK(proxy.stat("signature_failures") == 0);
    CHECK(proxy.stat("signatures_checked") >= 6);

    auto back = receive(queue, 46);
    std::set<std::string> bodies;
    for (auto& m : back) bodies.insert(m.body);
    CHECK(back.size() == 46);
    for (int i = 0; i <= 45; ++i) CHECK(bodies.count("{\"order\":" + std::to_string(i) + "}") == 1);
}

TEST_CASE("a coroutine sends with use_awaitable and attributes round-trip with their MD5s",
          "[sqs]") {
    const std::string queue = create_queue("outbox-attributes");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));

    outbox::Message m;
    m.body = "caf\xc3\xa9 \xe2\x82\xac \t tab and \"quotes\" \\ and \xe4\xb8\xad\xe6\x96\x87";
    m.attributes = {{"kind", "String", "order.created"},
                    {"amount", "Number", "-12.50"},
                    {"blob", "Binary", std::string("\x00\x01\xff\xfe binary", 11)},
                    {"tenant.id", "String.uuid", "7c0f5e0e-9a4d-4a4f-9f43-2d4b9b4c2a11"}};
    const auto expected_md5 = outbox::detail::sqs::md5_of_attributes(m.attributes);
    const auto sent_body = m.body;

    std::optional<outbox::Receipt> receipt;
    error_code result;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto [ec, r] =
                co_await sqs.async_send(std::move(m), asio::as_tuple(asio::use_awaitable));
            result = ec;
            receipt = std::move(r);
        },
        asio::detached);
    while (!receipt && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(receipt);
    REQUIRE_FALSE(result);  // the MD5s the server returned matched ours

    auto back = receive(queue, 1);
    REQUIRE(back.size() == 1);
    CHECK(back[0].body == sent_body);
    // The server's own digest of the attributes, read by another client, equals ours.
    CHECK(back[0].md5_of_attributes == std::string(expected_md5.data(), expected_md5.size()));
    CHECK(back[0].attributes["kind"] ==
          std::pair<std::string, std::string>{"String", "order.created"});
    CHECK(back[0].attributes["amount"] == std::pair<std::string, std::string>{"Number", "-12.50"});
    CHECK(back[0].attributes["blob"].first == "Binary");
    CHECK(back[0].attributes["blob"].second == "AAH//iBiaW5hcnk=");  // base64 of the 11 bytes
    CHECK(back[0].attributes["tenant.id"].first == "String.uuid");
}

TEST_CASE("FIFO: order holds within each group, and a missing group id fails before sending",
          "[sqs]") {
    const std::string queue = create_queue(
        "outbox-orders.fifo", R"({"FifoQueue":"true","ContentBasedDeduplication":"true"})");
    Proxy proxy({"--faults", "500=0.1,throttle=0.1,partial=0.1", "--seed", "11"});
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    CHECK(sqs.is_fifo());

    auto rejected = send_all(io, sqs, {text_message("no group")});
    CHECK(rejected[0].ec == outbox::Errc::invalid_message);
    CHECK(rejected[0].receipt.diagnostics.message.find("group id") != std::string::npos);
    CHECK(proxy.stat("requests") == 0);

    std::vector<outbox::Message> messages;
    for (int i = 0; i < 60; ++i) {
        outbox::Message m;
        m.group_id = "customer-" + std::to_string(i % 3);
        m.body = m.group_id + " event " + std::to_string(i / 3);
        messages.push_back(std::move(m));
    }
    auto outcomes = send_all(io, sqs, std::move(messages));
    for (auto& o : outcomes) {
        REQUIRE_FALSE(o.ec);
        CHECK_FALSE(o.receipt.sequence_number.empty());
    }
    CHECK(proxy.stat("faults.partial") + proxy.stat("faults.500") + proxy.stat("faults.throttle") >
          0);

    auto back = receive(queue, 60);
    REQUIRE(back.size() == 60);
    std::map<std::string, int> next;
    for (auto& m : back) {
        const int n = std::stoi(m.body.substr(m.body.rfind(' ') + 1));
        CHECK(m.group_id == m.body.substr(0, m.body.find(' ')));
        CHECK(n == next[m.group_id]++);  // in order, none missing, none twice
    }
}

TEST_CASE("oversize and invalid messages fail at once, before any request", "[sqs]") {
    const std::string queue = create_queue("outbox-rejects");
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.max_message_size = 1024;
    std::string logged;  // the I/O runs on this thread only
    config.logger = outbox::Logger{
        outbox::LogLevel::error,
        [&](outbox::LogLevel, std::string_view line) { logged.append(line).append("\n"); }};
    outbox::SqsDestination sqs(io.get_executor(), config);
    // Each refused message goes to the dead letters; a handler that throws is logged and the
    // message still completes.
    std::size_t letters = 0;
    sqs.set_dead_letter_handler([&](outbox::DeadLetter&& letter) {
        CHECK(letter.target == queue);
        if (++letters % 2 == 0) throw std::runtime_error("the parking table is full");
    });

    std::vector<outbox::Message> bad;
    bad.push_back(text_message(std::string(1025, 'x')));
    bad.push_back(text_message(std::string(2 * 1024 * 1024, 'x')));
    bad.push_back(text_message("control \x01 char"));
    bad.push_back(text_message("broken \xc3\x28 utf-8"));
    bad.push_back(text_message("\xef\xbf\xbf is U+FFFF"));
    bad.push_back(text_message(""));
    outbox::Message attrs = text_message("ok");
    attrs.attributes = {{"AWS.reserved", "String", "x"}};
    bad.push_back(attrs);
    attrs.attributes = {{"n", "Number", "twelve"}};
    bad.push_back(attrs);
    attrs.attributes = {{"n", "Decimal", "1"}};
    bad.push_back(attrs);
    attrs.attributes.clear();
    for (int i = 0; i < 11; ++i)
        attrs.attributes.push_back({"a" + std::to_string(i), "String", "v"});
    bad.push_back(attrs);
    outbox::Message dedup = text_message("dedup on a standard queue");
    dedup.deduplication_id = "d1";
    bad.push_back(dedup);

    auto outcomes = send_all(io, sqs, std::move(bad));
    CHECK(outcomes[0].ec == outbox::Errc::payload_too_large);
    CHECK(outcomes[1].ec == outbox::Errc::payload_too_large);
    for (std::size_t i = 2; i < outcomes.size(); ++i) {
        INFO("message " << i << ": " << outcomes[i].receipt.diagnostics.message);
        CHECK(outcomes[i].ec == outbox::Errc::invalid_message);
        CHECK_FALSE(outcomes[i].receipt.diagnostics.message.empty());
        CHECK_FALSE(outbox::is_retryable(outcomes[i].ec));
    }
    CHECK(proxy.stat("requests") == 0);
    CHECK(letters == outcomes.size());
    CHECK(logged.find("the dead-letter handler threw: the parking table is full") !=
          std::string::npos);
    const auto stats = sqs.stats();
    CHECK(stats.failed == outcomes.size());
    CHECK(stats.accepted == outcomes.size());
    CHECK(stats.in_flight == 0);
}

TEST_CASE("a batch with entries the server refuses: only those fail, with the server's reason",
          "[sqs]") {
    const std::string queue = create_queue("outbox-partial");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    DeadLetters dead;
    dead.attach(sqs);

    // fauxqs refuses characters above U+FFFF, which SQS itself accepts: a real per-entry
    // sender fault from the server, mixed into one batch with valid entries.
    std::vector<outbox::Message> messages;
    std::vector<std::string> bodies;
    for (int i = 0; i < 8; ++i) {
        bodies.push_back(i % 3 == 1 ? "emoji \xf0\x9f\x98\x80 " + std::to_string(i)
                                    : "plain " + std::to_string(i));
        messages.push_back(text_message(bodies.back()));
    }
    auto outcomes = send_all(io, sqs, std::move(messages));
    check_accounted(outcomes, bodies, sqs.stats(), dead);
    {
        std::lock_guard lock(dead.mutex);
        for (auto& letter : dead.letters) {
            CHECK(letter.target == queue);
            CHECK(letter.receipt.diagnostics.sender_fault);
        }
    }
    int delivered = 0;
    for (int i = 0; i < 8; ++i) {
        if (i % 3 == 1) {
            CHECK(outcomes[i].ec == outbox::Errc::service_error);
            CHECK(outcomes[i].receipt.diagnostics.sender_fault);
            CHECK_FALSE(outcomes[i].receipt.diagnostics.code.empty());
            // What the service said is kept apart, and outbox's account still says it.
            const auto& d = outcomes[i].receipt.diagnostics;
            CHECK(d.message.find(d.service_message) != std::string::npos);
            CHECK(outcomes[i].receipt.attempts == 1);  // sender faults are not retried
        } else {
            CHECK_FALSE(outcomes[i].ec);
            ++delivered;
        }
    }
    CHECK(sqs.stats().requests == 1);  // one batch carried all eight
    auto back = receive(queue, static_cast<std::size_t>(delivered), 5);
    CHECK(back.size() == static_cast<std::size_t>(delivered));
    for (auto& m : back) CHECK(m.body.starts_with("plain "));
}

TEST_CASE(
    "faults injected on a seeded schedule: every message accounted for once, all in the queue",
    "[sqs]") {
    const std::string queue = create_queue("outbox-faults");
    Proxy proxy({"--faults",
                 "500=0.05,503=0.05,throttle=0.05,reset=0.05,lost=0.05,slow=0.05,partial=0.1",
                 "--seed", "42", "--slow-ms", "100"});
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.retry.max_attempts = 30;
    config.max_concurrent_requests = 4;
    outbox::SqsDestination sqs(io.get_executor(), config);
    DeadLetters dead;
    dead.attach(sqs);

    constexpr int count = 300;
    std::vector<outbox::Message> messages;
    std::vector<std::string> bodies;
    for (int i = 0; i < count; ++i) {
        bodies.push_back("event " + std::to_string(i));
        messages.push_back(text_message(bodies.back()));
    }
    auto outcomes = send_all(io, sqs, std::move(messages));
    for (auto& o : outcomes) REQUIRE_FALSE(o.ec);
    const auto stats = sqs.stats();
    check_accounted(outcomes, bodies, stats, dead);
    CHECK(stats.retried > 0);
    CHECK(stats.bytes_delivered == stats.bytes_accepted);
    // Slow replies (100 ms) and backoff show in the latency: the slowest send waited longer
    // than the median one.
    CHECK(stats.latency.percentile(0.5) <= stats.latency.percentile(1.0));
    CHECK(stats.latency.max >= std::chrono::milliseconds(100));
    for (const char* kind : {"500", "503", "throttle", "reset", "lost", "partial"})
        CHECK(proxy.stat(std::string("faults.") + kind) > 0);
    CHECK(proxy.stat("signature_failures") == 0);

    // At least once: a reply lost after the server stored the message means a duplicate.
    auto back = receive(queue, count + proxy.stat("faults.lost") * 10, 3);
    std::map<std::string, int> seen;
    for (auto& m : back) ++seen[m.body];
    CHECK(seen.size() == count);
    for (int i = 0; i < count; ++i) CHECK(seen.count("event " + std::to_string(i)) == 1);
}

TEST_CASE("a reply whose MD5 does not match what was sent fails the message, without a retry",
          "[sqs]") {
    const std::string queue = create_queue("outbox-md5");
    Proxy proxy({"--faults", "md5=1.0"});
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    auto outcomes =
        send_all(io, sqs, {text_message("altered on the way back"), text_message("and this one")});
    for (auto& o : outcomes) {
        CHECK(o.ec == outbox::Errc::checksum_mismatch);
        CHECK_FALSE(outbox::is_retryable(o.ec));
        CHECK(o.receipt.attempts == 1);
        CHECK(o.receipt.diagnostics.message.find("MD5OfMessageBody") != std::string::npos);
    }
    CHECK(proxy.stat("faults.md5") == 1);  // one batch carried both
}

TEST_CASE("a batch refused as a whole: each entry is sent alone and all arrive", "[sqs]") {
    const std::string queue = create_queue("outbox-split");
    Proxy proxy({"--faults", "refuse_batch=1.0"});
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 5; ++i) messages.push_back(text_message("split " + std::to_string(i)));
    auto outcomes = send_all(io, sqs, std::move(messages));
    for (auto& o : outcomes) {
        REQUIRE_FALSE(o.ec);
        CHECK(o.receipt.attempts == 2);  // the refused batch, then alone
        CHECK(o.receipt.diagnostics.code == "InvalidParameterValue");  // what the retry overcame
    }
    CHECK(proxy.stat("faults.refuse_batch") == 1);
    CHECK(sqs.stats().requests == 1 + 5);
    CHECK(receive(queue, 5, 5).size() == 5);
}

TEST_CASE("a server clock 15 minutes ahead: the signature error corrects the offset", "[sqs]") {
    const std::string queue = create_queue("outbox-skew");
    Proxy proxy({"--clock-offset", "900"});
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    auto outcomes = send_all(io, sqs, {text_message("first"), text_message("second")});
    for (auto& o : outcomes) REQUIRE_FALSE(o.ec);
    CHECK(proxy.stat("skew_refusals") >= 1);
    auto later = send_all(io, sqs, {text_message("third")});
    REQUIRE_FALSE(later[0].ec);
    CHECK(later[0].receipt.attempts == 1);  // signed with the corrected clock from now on
}

TEST_CASE("a queue given by name is looked up; an unknown queue fails with the service's code",
          "[sqs]") {
    create_queue("outbox-by-name");
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io.get_executor(), "", proxy);
    config.queue_url.clear();
    config.queue_name = "outbox-by-name";
    outbox::SqsDestination sqs(io.get_executor(), config);
    auto outcomes = send_all(io, sqs, {text_message("by name")});
    REQUIRE_FALSE(outcomes[0].ec);
    CHECK(sqs.queue_url().ends_with("/outbox-by-name"));

    config.queue_name = "outbox-no-such-queue";
    outbox::SqsDestination missing(io.get_executor(), config);
    auto failed = send_all(io, missing, {text_message("nowhere")});
    CHECK(failed[0].ec == outbox::Errc::service_error);
    const auto& code = failed[0].receipt.diagnostics.code;
    CHECK((code == "QueueDoesNotExist" || code == "AWS.SimpleQueueService.NonExistentQueue"));
    CHECK(failed[0].receipt.diagnostics.http_status == 400);
}

TEST_CASE("co_await with the default token: a Receipt back, or a SendError that keeps it",
          "[sqs]") {
    const std::string queue = create_queue("outbox-default-token");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    auto config = config_for(io.get_executor(), "", proxy);
    config.queue_url = queue.substr(0, queue.rfind('/')) + "/outbox-no-such-queue";
    outbox::SqsDestination missing(io.get_executor(), config);

    std::optional<outbox::Receipt> delivered;
    std::optional<outbox::SendError> refused;
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            delivered = co_await sqs.async_send(text_message("default token"));
            try {
                co_await missing.async_send(text_message("nowhere"));
            } catch (const outbox::SendError& e) {
                refused = e;
            }
            co_await sqs.async_close(std::chrono::seconds(5));
            co_await missing.async_close(std::chrono::seconds(5));
            done = true;
        },
        asio::detached);
    while (!done && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(done);
    REQUIRE(delivered);
    CHECK_FALSE(delivered->message_id.empty());
    CHECK(delivered->attempts == 1);
    REQUIRE(refused);
    CHECK(refused->code() == outbox::Errc::service_error);
    const auto& code = refused->receipt().diagnostics.code;
    CHECK((code == "QueueDoesNotExist" || code == "AWS.SimpleQueueService.NonExistentQueue"));
    CHECK(refused->receipt().diagnostics.http_status == 400);
    CHECK_THAT(std::string(refused->what()), Catch::Contains(code));
    auto back = receive(queue, 1);
    REQUIRE(back.size() == 1);
    CHECK(back[0].body == "default token");
}

TEST_CASE("backpressure: sends wait for room, and a waiting send can be cancelled", "[sqs]") {
    const std::string queue = create_queue("outbox-backpressure");
    Proxy proxy({"--faults", "slow=1.0", "--slow-ms", "200"});
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.max_in_flight_messages = 2;
    config.max_batch_entries = 1;
    outbox::SqsDestination sqs(io.get_executor(), config);

    std::vector<Outcome> outcomes(5);
    std::size_t done = 0;
    asio::cancellation_signal cancel_last;
    for (int i = 0; i < 5; ++i) {
        auto handler = [&, i](error_code ec, outbox::Receipt r) {
            outcomes[i].ec = ec;
            outcomes[i].receipt = std::move(r);
            ++done;
        };
        if (i == 4)
            sqs.async_send(text_message("cancelled"),
                           asio::bind_cancellation_slot(cancel_last.slot(), handler));
        else
            sqs.async_send(text_message("waits " + std::to_string(i)), handler);
    }
    // Let the first two reach the wire, then cancel the last while it waits for room.
    while (sqs.stats().requests < 2 && io.run_one_for(std::chrono::seconds(10)) != 0) {
    }
    cancel_last.emit(asio::cancellation_type::terminal);
    while (done < 5 && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(done == 5);
    for (int i = 0; i < 4; ++i) CHECK_FALSE(outcomes[i].ec);
    CHECK(outcomes[4].ec == asio::error::operation_aborted);
    CHECK(outcomes[4].receipt.attempts == 0);
    CHECK(sqs.stats().requests == 4);  // the cancelled one never went out
    auto back = receive(queue, 4, 5);
    CHECK(back.size() == 4);
}

TEST_CASE("close flushes what is queued; past its deadline the rest fails, and close reports it",
          "[sqs]") {
    const std::string queue = create_queue("outbox-close");
    {
        Proxy proxy;
        asio::io_context io;
        auto config = config_for(io.get_executor(), queue, proxy);
        config.linger = std::chrono::milliseconds(50);
        outbox::SqsDestination sqs(io.get_executor(), config);
        std::size_t done = 0;
        for (int i = 0; i < 25; ++i)
            sqs.async_send(text_message("flush " + std::to_string(i)),
                           [&](error_code ec, outbox::Receipt) {
                               CHECK_FALSE(ec);
                               ++done;
                           });
        const error_code closed = close_destination(io, sqs);
        CHECK_FALSE(closed);
        CHECK(done == 25);  // every message completed before close did
        auto after = send_all(io, sqs, {text_message("too late")});
        CHECK(after[0].ec == asio::error::operation_aborted);
        // Closed already: another close (a router closing its targets again) completes at once,
        // as the first ended, and leaves nothing running.
        CHECK_FALSE(close_destination(io, sqs, std::chrono::seconds(60)));
        io.restart();
        io.run_for(std::chrono::seconds(5));
        CHECK(io.stopped());  // out of work at once: no timer left armed
        CHECK(receive(queue, 25, 5).size() == 25);
    }
    {
        Proxy proxy({"--faults", "slow=1.0", "--slow-ms", "5000"});
        asio::io_context io;
        auto config = config_for(io.get_executor(), queue, proxy);
        outbox::SqsDestination sqs(io.get_executor(), config);
        std::vector<error_code> results;
        for (int i = 0; i < 3; ++i)
            sqs.async_send(text_message("stuck " + std::to_string(i)),
                           [&](error_code ec, outbox::Receipt) { results.push_back(ec); });
        bool closed = false;
        error_code close_result;
        sqs.async_close(std::chrono::milliseconds(300), [&](error_code ec) {
            close_result = ec;
            closed = true;
        });
        while (!closed && io.run_one_for(std::chrono::seconds(30)) != 0) {
        }
        REQUIRE(closed);
        CHECK(close_result == outbox::Errc::close_timeout);
        REQUIRE(results.size() == 3);  // all completed before close did
        for (auto& ec : results)
            CHECK((ec == outbox::Errc::outcome_unknown || ec == asio::error::operation_aborted));
        CHECK(close_destination(io, sqs) == outbox::Errc::close_timeout);  // again: as it ended
    }
}

TEST_CASE("destroying a destination with messages on the wire and queued does not hang", "[sqs]") {
    const std::string queue = create_queue("outbox-destroy");
    Proxy proxy({"--faults", "slow=1.0", "--slow-ms", "5000"});
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.max_concurrent_requests = 1;
    config.max_batch_entries = 1;
    config.max_message_size = 262144;  // no GetQueueAttributes through the slow proxy
    auto sqs = std::make_unique<outbox::SqsDestination>(io.get_executor(), config);
    std::vector<error_code> results;
    for (int i = 0; i < 3; ++i)
        sqs->async_send(text_message("doomed " + std::to_string(i)),
                        [&](error_code ec, outbox::Receipt) { results.push_back(ec); });
    while (sqs->stats().requests < 1 && io.run_one_for(std::chrono::seconds(10)) != 0) {
    }
    sqs.reset();  // one request on the wire, two queued
    io.restart();
    while (results.size() < 3 && io.run_one_for(std::chrono::seconds(10)) != 0) {
    }
    REQUIRE(results.size() == 3);
    io.run_for(std::chrono::seconds(20));  // returns once nothing is left to do
    CHECK(io.stopped());
    for (auto& ec : results)
        CHECK((ec == outbox::Errc::outcome_unknown || ec == asio::error::operation_aborted));
}

TEST_CASE("send_blocking from a program without its own event loop", "[sqs]") {
    const std::string queue = create_queue("outbox-blocking");
    Proxy proxy;
    asio::thread_pool pool(1);
    outbox::SqsDestination sqs(pool.get_executor(), config_for(pool.get_executor(), queue, proxy));
    error_code ec;
    const auto receipt = outbox::send_blocking(sqs, text_message("blocking"), ec);
    REQUIRE_FALSE(ec);
    CHECK_FALSE(receipt.message_id.empty());
    CHECK_FALSE(outbox::close_blocking(sqs, std::chrono::seconds(5)));
    pool.join();
    CHECK(receive(queue, 1, 5).at(0).body == "blocking");
}

TEST_CASE("trace context: traceparent and tracestate as attributes, X-Ray's as AWSTraceHeader",
          "[sqs]") {
    const std::string queue = create_queue("outbox-trace");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const std::string xray =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    outbox::Message m = text_message("traced");
    m.attributes.push_back({"tenant", "String", "t1"});
    m.traceparent = traceparent;
    m.tracestate = "congo=t61rcWkgMzE";
    m.aws_trace_header = xray;
    auto outcomes = send_all(io, sqs, {std::move(m)});
    REQUIRE_FALSE(outcomes[0].ec);  // the attributes' MD5 SQS returned matched ours

    // What went on the wire: the system attribute beside the message attributes.
    simdjson::dom::parser parser;
    simdjson::dom::object sent = parser.parse(proxy.last_body());
    simdjson::dom::object entry = sent;  // SendMessage, or a batch of one
    if (sent["Entries"].error() == simdjson::SUCCESS) entry = sent["Entries"].at(0);
    CHECK(std::string_view(entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]) ==
          xray);
    CHECK(std::string_view(entry["MessageSystemAttributes"]["AWSTraceHeader"]["DataType"]) ==
          "String");
    // Read back by the AWS SDK for JavaScript.
    auto back = receive(queue, 1);
    REQUIRE(back.size() == 1);
    CHECK(back[0].attributes.at("traceparent") ==
          std::pair<std::string, std::string>{"String", traceparent});
    CHECK(back[0].attributes.at("tracestate").second == "congo=t61rcWkgMzE");
    CHECK(back[0].attributes.at("tenant").second == "t1");
    CHECK(back[0].attributes.size() == 3);

    // Refused at once, saying why: a malformed traceparent, and one given twice.
    outbox::Message bad = text_message("bad");
    bad.traceparent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    outbox::Message twice = text_message("twice");
    twice.traceparent = traceparent;
    twice.attributes.push_back({"traceparent", "String", traceparent});
    auto refused = send_all(io, sqs, {std::move(bad), std::move(twice)});
    CHECK(refused[0].ec == outbox::Errc::invalid_message);
    CHECK(refused[0].receipt.diagnostics.message.find("lower case") != std::string::npos);
    CHECK(refused[1].ec == outbox::Errc::invalid_message);
    CHECK(refused[1].receipt.diagnostics.message.find("give it once") != std::string::npos);
}

TEST_CASE("sends from many threads while the destination closes: every one accounted for",
          "[sqs]") {
    // Sends reach the strand through one inbox drained by a job; close takes what is in it,
    // whichever thread put it there, and what comes after close is refused, never lost.
    const std::string queue = create_queue("outbox-many-threads");
    Proxy proxy;
    asio::thread_pool pool(2);
    outbox::SqsDestination sqs(pool.get_executor(), config_for(pool.get_executor(), queue, proxy));
    constexpr int threads = 4, per_thread = 300;
    std::atomic<int> sent{0}, delivered{0}, closed_refusals{0}, other{0};
    std::mutex delivered_mutex;
    std::set<std::string> delivered_bodies;
    std::vector<std::thread> senders;
    for (int t = 0; t < threads; ++t)
        senders.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                std::string body = std::to_string(t) + "-" + std::to_string(i);
                sqs.async_send(text_message(body), [&, body](error_code ec, outbox::Receipt) {
                    if (!ec) {
                        ++delivered;
                        std::lock_guard lock(delivered_mutex);
                        delivered_bodies.insert(body);
                    } else if (ec == asio::error::operation_aborted) {
                        ++closed_refusals;
                    } else {
                        ++other;
                    }
                });
                ++sent;
            }
        });
    while (sent < threads * per_thread / 4) std::this_thread::yield();
    CHECK_FALSE(outbox::close_blocking(sqs, std::chrono::seconds(30)));  // senders still going
    for (auto& s : senders) s.join();
    pool.join();  // every completion has run
    CHECK(delivered + closed_refusals == threads * per_thread);
    CHECK(other == 0);
    CHECK(delivered >= threads * per_thread / 4);  // all sent before close went out
    std::set<std::string> received;
    for (const auto& m : receive(queue, std::size_t(delivered.load()), 30)) received.insert(m.body);
    CHECK(received == delivered_bodies);
}

TEST_CASE("configuration that cannot work is refused at construction", "[sqs]") {
    asio::io_context io;
    outbox::SqsDestinationConfig c;
    c.credentials = outbox::make_static_credentials(io.get_executor(),
                                                    outbox::Credentials{access_key, secret_key});
    c.queue_url = "not a url";
    CHECK_THROWS_AS(outbox::SqsDestination(io.get_executor(), c), std::invalid_argument);
    c.queue_url = "https://sqs.eu-west-1.amazonaws.com/only-one-segment";
    CHECK_THROWS_AS(outbox::SqsDestination(io.get_executor(), c), std::invalid_argument);
    c.queue_url = "http://127.0.0.1:4566/000000000000/local";  // no region anywhere
    try {
        outbox::SqsDestination no_region(io.get_executor(), c);
        FAIL("a local queue URL without a region was accepted");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("region") != std::string::npos);
    }
    c.region = "us-east-1";
    CHECK_NOTHROW(outbox::SqsDestination(io.get_executor(), c));
    c.queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo";
    c.region.clear();
    outbox::SqsDestination fifo(io.get_executor(), c);
    CHECK(fifo.is_fifo());
    c.credentials = nullptr;
    CHECK_THROWS_AS(outbox::SqsDestination(io.get_executor(), c), std::invalid_argument);
}

TEST_CASE("a message cut off by the close deadline keeps the reason it was retrying", "[sqs]") {
    const std::string queue = create_queue("outbox-close-reason");
    std::uint16_t closed_port;
    {
        Proxy gone;
        closed_port = gone.process.port();
    }
    asio::io_context io;
    Proxy proxy;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.endpoint = "http://127.0.0.1:" + std::to_string(closed_port);  // refuses connections
    config.max_message_size = 262144;  // no lookup: the sends themselves are refused
    config.retry.base_delay = std::chrono::milliseconds(20);
    config.retry.max_delay = std::chrono::milliseconds(50);
    config.retry.max_attempts = 100000;  // attempts never run out first, however fast they fail
    outbox::SqsDestination sqs(io.get_executor(), config);
    std::optional<Outcome> outcome;
    sqs.async_send(text_message("never arrives"), [&](error_code ec, outbox::Receipt r) {
        outcome = Outcome{ec, std::move(r), 1};
    });
    error_code closed;
    io.run_for(std::chrono::milliseconds(300));  // a few refused attempts
    sqs.async_close(std::chrono::milliseconds(200), [&](error_code ec) { closed = ec; });
    io.restart();
    io.run();
    REQUIRE(outcome);
    CHECK(outcome->ec == asio::error::operation_aborted);
    CHECK(closed == outbox::Errc::close_timeout);
    CHECK(closed.message().find("close deadline passed") != std::string::npos);
    const std::string& why = outcome->receipt.diagnostics.message;
    INFO(why);
    CHECK(why.starts_with("the close deadline passed; last attempt: cannot connect to 127.0.0.1:" +
                          std::to_string(closed_port) + ": Connection refused"));
    CHECK(outcome->receipt.attempts >= 1);
}

TEST_CASE("the message deadline bounds acceptance to outcome, request and lookup included",
          "[sqs]") {
    const std::string queue = create_queue("outbox-deadline");
    Proxy proxy({"--faults", "slow=1.0", "--slow-ms", "20000"});
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.retry.message_deadline = std::chrono::milliseconds(1500);
    outbox::SqsDestination sqs(io.get_executor(), config);
    const auto start = std::chrono::steady_clock::now();
    auto outcomes = send_all(io, sqs, {text_message("a"), text_message("b"), text_message("c")});
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took < std::chrono::seconds(4));  // the request timeout alone is 30 s
    for (const auto& o : outcomes) {
        INFO(o.receipt.diagnostics.message);
        CHECK((o.ec == outbox::Errc::timeout || o.ec == outbox::Errc::outcome_unknown));
        CHECK(o.receipt.diagnostics.message.find("deadline") != std::string::npos);
    }
}

TEST_CASE("a message refused before any request has attempts 0; one sent once has 1", "[sqs]") {
    const std::string queue = create_queue("outbox-attempts");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    outbox::Message empty;  // SQS refuses empty bodies: refused here, before a request
    auto outcomes = send_all(io, sqs, {std::move(empty), text_message("fine")});
    CHECK(outcomes[0].ec == outbox::Errc::invalid_message);
    CHECK(outcomes[0].receipt.attempts == 0);
    CHECK_FALSE(outcomes[1].ec);
    CHECK(outcomes[1].receipt.attempts == 1);
}

TEST_CASE("async_send_all: many messages, at most N in flight, outcomes in order", "[sqs]") {
    const std::string queue = create_queue("outbox-send-all");
    Proxy proxy;
    asio::io_context io;
    outbox::SqsDestination sqs(io.get_executor(), config_for(io.get_executor(), queue, proxy));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 500; ++i) messages.push_back(text_message("many " + std::to_string(i)));
    messages[250].body.clear();  // one refused: its outcome says so, in its place
    std::optional<std::vector<outbox::SendOutcome>> outcomes;
    std::size_t most_in_flight = 0;
    asio::steady_timer watch(io);
    std::function<void()> sample = [&] {  // how many the destination holds, while it runs
        most_in_flight = std::max<std::size_t>(most_in_flight, sqs.stats().in_flight);
        if (outcomes) return;
        watch.expires_after(std::chrono::milliseconds(1));
        watch.async_wait([&](error_code) { sample(); });
    };
    sample();
    outbox::async_send_all(sqs, std::move(messages), 32,
                           [&](std::vector<outbox::SendOutcome> o) { outcomes = std::move(o); });
    while (!outcomes && io.run_one() != 0) {
    }
    REQUIRE(outcomes);
    REQUIRE(outcomes->size() == 500);
    for (std::size_t i = 0; i < 500; ++i) {
        CAPTURE(i);
        if (i == 250) {
            CHECK((*outcomes)[i].error == outbox::Errc::invalid_message);
        } else {
            CHECK_FALSE((*outcomes)[i].error);
            CHECK_FALSE((*outcomes)[i].receipt.message_id.empty());
        }
    }
    CHECK(most_in_flight <= 32);
    CHECK(receive(queue, 499).size() == 499);

    SECTION("cancelled: what was not handed over fails with operation_aborted") {
        std::vector<outbox::Message> more;
        for (int i = 0; i < 200; ++i) more.push_back(text_message("more " + std::to_string(i)));
        asio::cancellation_signal cancel;
        std::optional<std::vector<outbox::SendOutcome>> partial;
        outbox::async_send_all(
            sqs, std::move(more), 4,
            asio::bind_cancellation_slot(cancel.slot(), [&](std::vector<outbox::SendOutcome> o) {
                partial = std::move(o);
            }));
        cancel.emit(asio::cancellation_type::terminal);
        io.restart();
        while (!partial && io.run_one() != 0) {
        }
        REQUIRE(partial);
        std::size_t sent = 0, aborted = 0;
        for (const auto& o : *partial) (o.error ? aborted : sent) += 1;
        CHECK(sent <= 4);
        CHECK(aborted >= 196);
        for (std::size_t i = 4; i < partial->size(); ++i)
            CHECK((*partial)[i].error == asio::error::operation_aborted);
    }
}

TEST_CASE("the endpoint and region from AWS_ENDPOINT_URL_SQS and AWS_REGION", "[sqs]") {
    const std::string queue = create_queue("outbox-env-endpoint");
    Proxy proxy;
    const std::string endpoint = proxy.process.url();
    ::setenv("AWS_ENDPOINT_URL_SQS", endpoint.c_str(), 1);
    ::setenv("AWS_REGION", "us-east-1", 1);
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.endpoint.clear();
    config.region.clear();
    std::optional<outbox::SqsDestination> sqs;
    sqs.emplace(io.get_executor(), config);
    ::unsetenv("AWS_ENDPOINT_URL_SQS");
    ::unsetenv("AWS_REGION");
    auto outcomes = send_all(io, *sqs, {text_message("via the environment")});
    CHECK_FALSE(outcomes[0].ec);
    CHECK(proxy.stat("requests") >= 1);  // through the endpoint the environment named
    CHECK(proxy.stat("signature_failures") == 0);
    CHECK(receive(queue, 1).size() == 1);
}

namespace {

// Credentials that take their time, as instance metadata or STS can.
class SlowCredentials final : public outbox::CredentialsProvider {
  public:
    SlowCredentials(asio::any_io_executor ex, std::chrono::milliseconds delay)
        : ex_(std::move(ex)), delay_(delay) {}
    std::string name() const override { return "slow"; }

  protected:
    void do_get_credentials(Handler h) override {
        auto timer = std::make_shared<asio::steady_timer>(ex_, delay_);
        timer->async_wait([timer, h = std::move(h)](error_code) mutable {
            std::move(h)(error_code{}, outbox::Credentials{access_key, secret_key});
        });
    }

  private:
    asio::any_io_executor ex_;
    std::chrono::milliseconds delay_;
};

}  // namespace

TEST_CASE("the deadline holds while credentials are slow to come", "[sqs]") {
    const std::string queue = create_queue("outbox-slow-credentials");
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io.get_executor(), queue, proxy);
    config.max_message_size = 262144;  // no lookup
    config.retry.message_deadline = std::chrono::milliseconds(800);
    config.credentials =
        std::make_shared<SlowCredentials>(io.get_executor(), std::chrono::seconds(5));
    outbox::SqsDestination sqs(io.get_executor(), config);
    const auto start = std::chrono::steady_clock::now();
    auto outcomes = send_all(io, sqs, {text_message("late credentials")});
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(4));  // not 5 s
    CHECK(outcomes[0].ec == outbox::Errc::timeout);
    INFO(outcomes[0].receipt.diagnostics.message);
    CHECK(outcomes[0].receipt.diagnostics.message.find(
              "the message deadline passed while credentials were fetched") != std::string::npos);
    io.restart();
    io.run_for(std::chrono::seconds(5));  // the credentials arrive: nothing is sent after all
    CHECK(proxy.stat("requests") == 0);
}

namespace {

// Credentials that never come (an endpoint that does not answer): the handlers are kept.
class SilentCredentials final : public outbox::CredentialsProvider {
  public:
    std::string name() const override { return "silent"; }
    std::size_t asked() const { return held_.size(); }
    // What a late answer would do to a destination that is gone: nothing. (Holding them
    // would keep the destination's state alive for ever: they refer to it.)
    void answer_late() {
        for (auto& h : held_)
            std::move(h)(make_error_code(outbox::Errc::credentials_not_found),
                         outbox::Credentials{});
        held_.clear();
    }

  protected:
    void do_get_credentials(Handler h) override { held_.push_back(std::move(h)); }

  private:
    std::vector<Handler> held_;
};

}  // namespace

TEST_CASE("closing or destroying ends a send that waits for credentials", "[sqs]") {
    const bool destroy = GENERATE(false, true);
    INFO((destroy ? "destroyed" : "closed with a 200 ms deadline"));
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = "http://127.0.0.1:9/000000000000/never-reached";
    config.region = "us-east-1";
    config.max_message_size = 262144;  // no lookup
    auto credentials = std::make_shared<SilentCredentials>();
    config.credentials = credentials;
    std::optional<outbox::SqsDestination> sqs(std::in_place, io.get_executor(), config);
    std::optional<error_code> sent, closed;
    sqs->async_send(text_message("waits for credentials"),
                    [&](error_code ec, outbox::Receipt) { sent = ec; });
    while (credentials->asked() == 0 && io.run_one_for(std::chrono::seconds(1))) {
    }
    REQUIRE(credentials->asked() == 1);
    if (destroy)
        sqs.reset();
    else
        sqs->async_close(std::chrono::milliseconds(200), [&](error_code ec) { closed = ec; });
    io.restart();
    io.run_for(std::chrono::seconds(10));  // returns early: nothing is left waiting
    REQUIRE(sent);
    CHECK(*sent == asio::error::operation_aborted);  // never sent
    if (!destroy) CHECK(closed == error_code(outbox::Errc::close_timeout));
    sqs.reset();
    credentials->answer_late();
    io.restart();
    io.run_for(std::chrono::seconds(10));
    CHECK(io.stopped());
}

namespace {

// Claims keys at hand but gives empty ones, as a faulty provider of an application could.
class EmptyAtHand final : public outbox::CredentialsProvider {
  public:
    explicit EmptyAtHand(asio::any_io_executor ex) : ex_(std::move(ex)) {}
    std::string name() const override { return "empty at hand"; }
    bool credentials_at_hand(outbox::Credentials& out) override {
        ++at_hand;
        out = outbox::Credentials{};
        return true;
    }
    int at_hand = 0, asked = 0;

  protected:
    void do_get_credentials(Handler h) override {
        ++asked;
        asio::post(ex_,
                   asio::append(std::move(h), make_error_code(outbox::Errc::missing_credentials),
                                outbox::Credentials{}));
    }

  private:
    asio::any_io_executor ex_;
};

}  // namespace

TEST_CASE("keys at hand that cannot sign fail the message before any request", "[sqs]") {
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = "http://127.0.0.1:9/000000000000/never-reached";
    config.region = "us-east-1";
    config.max_message_size = 262144;  // no lookup
    auto credentials = std::make_shared<EmptyAtHand>(io.get_executor());
    config.credentials = credentials;
    outbox::SqsDestination sqs(io.get_executor(), config);
    auto outcomes = send_all(io, sqs, {text_message("cannot be signed")});
    CHECK(outcomes[0].ec == outbox::Errc::missing_credentials);
    CHECK(outcomes[0].receipt.attempts <= 1);
    CHECK(credentials->at_hand >= 1);
    CHECK(credentials->asked == 0);  // answered from what was at hand, never asked
}

TEST_CASE("a credentials provider that throws fails the messages with its reason; close ends",
          "[sqs]") {
    const bool at_hand = GENERATE(true, false);
    INFO((at_hand ? "throws from credentials_at_hand" : "throws from async_get_credentials"));
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = "http://127.0.0.1:9/000000000000/never-reached";
    config.region = "us-east-1";
    config.max_message_size = 262144;                              // no lookup
    config.retry.message_deadline = std::chrono::milliseconds(0);  // no deadline to rescue them
    config.credentials = std::make_shared<outbox::test::ThrowingCredentials>(
        io.get_executor(), "the key service is down", at_hand ? "the key store is locked" : "");
    outbox::SqsDestination sqs(io.get_executor(), config);
    auto outcomes = send_all(io, sqs, {text_message("one"), text_message("two")});
    for (const auto& o : outcomes) {
        CHECK(o.ec == outbox::Errc::credentials_not_found);
        CHECK(o.receipt.diagnostics.message.find(at_hand ? "the key store is locked"
                                                         : "the key service is down") !=
              std::string::npos);
    }
    CHECK_FALSE(close_destination(io, sqs));
    CHECK(sqs.stats().failed == 2);
}

TEST_CASE("the queue lookup is cut short by the deadline of the messages waiting for it", "[sqs]") {
    // GetQueueAttributes never answers: without the cut, the lookup would hold its
    // connection for the whole request timeout (30 s).
    outbox::test::TestHttpServer server([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.action = outbox::test::TestReply::Action::hold;
        return reply;
    });
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = server.url("/000000000000/silent");
    config.region = "us-east-1";
    config.credentials = outbox::make_static_credentials(
        io.get_executor(), outbox::Credentials{access_key, secret_key});
    config.retry.message_deadline = std::chrono::milliseconds(1000);
    config.retry.max_attempts = 1;
    outbox::SqsDestination sqs(io.get_executor(), config);
    std::promise<Outcome> done;
    sqs.async_send(text_message("waits for the lookup"), [&](error_code ec, outbox::Receipt r) {
        done.set_value(Outcome{ec, std::move(r), 1});
    });
    const auto start = std::chrono::steady_clock::now();
    std::thread runner([&] { io.run_for(std::chrono::seconds(20)); });
    REQUIRE(server.wait_for_requests(1));
    // The client gives the lookup up at the deadline: the server sees the connection go.
    CHECK(server.wait_for_client_closes(1, std::chrono::seconds(10)));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));  // not 30 s
    const auto outcome = done.get_future().get();
    CHECK(outcome.ec == outbox::Errc::timeout);
    io.stop();
    runner.join();
}

TEST_CASE("fallback_region signs only when nothing else names a region", "[sqs]") {
    // The server answers nothing useful; what matters is the scope each request was signed for.
    outbox::test::TestHttpServer server([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.status = 400;
        reply.body = R"({"__type":"com.amazonaws.sqs#AccessDenied","message":"no"})";
        return reply;
    });
    auto scope_of_first_request = [&](outbox::SqsDestinationConfig config) {
        asio::io_context io;
        config.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{access_key, secret_key});
        outbox::SqsDestination sqs(io.get_executor(), config);
        send_all(io, sqs, {text_message("scope")});
        const auto requests = server.received();
        REQUIRE_FALSE(requests.empty());
        const std::string auth = requests.back().header("Authorization");
        const auto start = auth.find("Credential=");
        REQUIRE(start != std::string::npos);
        return auth.substr(start, auth.find(',', start) - start);
    };
    asio::io_context io;
    outbox::SqsDestinationConfig config;
    config.queue_url = server.url("/000000000000/scoped");  // a host that names no region
    config.credentials = outbox::make_static_credentials(
        io.get_executor(), outbox::Credentials{access_key, secret_key});
    config.retry.max_attempts = 1;
    config.max_message_size = 262144;  // no GetQueueAttributes first
    config.fallback_region = "eu-west-3";
    ::unsetenv("AWS_REGION");
    ::unsetenv("AWS_DEFAULT_REGION");
    ::setenv("AWS_CONFIG_FILE", "/nonexistent/outbox-test-config", 1);
    CHECK_THAT(scope_of_first_request(config), Catch::Contains("/eu-west-3/sqs/aws4_request"));
    ::setenv("AWS_REGION", "ap-south-1", 1);  // the environment comes first
    CHECK_THAT(scope_of_first_request(config), Catch::Contains("/ap-south-1/sqs/aws4_request"));
    ::unsetenv("AWS_REGION");
    config.region = "sa-east-1";  // and the configuration before both
    CHECK_THAT(scope_of_first_request(config), Catch::Contains("/sa-east-1/sqs/aws4_request"));
    config.region.clear();
    config.fallback_region = "not a region";
    CHECK_THROWS_AS(outbox::SqsDestination(io.get_executor(), config), std::invalid_argument);
    ::unsetenv("AWS_CONFIG_FILE");
}
