// The durable outbox end to end: events stored in SQLite, relayed to a real local SQS
// (fauxqs) behind the signature-checking proxy, read back by an independent client. Outages
// longer than any in-memory deadline, dead letters, redrive, restarts, per-group order.
#include "catch.hpp"
#include "fake_sqs.hpp"
#include "function_destination.hpp"
#include "local_peers.hpp"
#include "program_run.hpp"
#include "sigv4_proxy.hpp"
#include "test_http_server.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/outbox.hpp>
#include <outbox/sqlite_store.hpp>
#include <outbox/sqs_destination.hpp>

#include <simdjson.h>
#include <boost/asio/append.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;
using outbox::test::create_queue;
using outbox::test::fauxqs;
using outbox::test::TempDir;

namespace {

const std::string access_key = "AKIDOUTBOXTEST";
const std::string secret_key = "outbox-test-secret";

struct Proxy : outbox::test::SigV4Proxy {
    explicit Proxy(const std::vector<std::string>& extra = {})
        : SigV4Proxy(fauxqs().port(), "sqs", access_key, secret_key, extra) {}
};

// Destinations through `proxy`, with short retries of their own (the outbox retries).
std::function<std::unique_ptr<outbox::Destination>(const std::string&)> factory(
    asio::io_context& io, const Proxy& proxy) {
    return [&io, endpoint = proxy.process.url()](const std::string& queue_url) {
        outbox::SqsDestinationConfig c;
        c.queue_url = queue_url;
        c.endpoint = endpoint;
        c.region = "us-east-1";
        c.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{access_key, secret_key});
        c.retry.max_attempts = 2;
        c.retry.base_delay = 10ms;
        c.retry.message_deadline = 2s;
        c.http.request_timeout = 1s;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
}

outbox::OutboxConfig config_for(asio::io_context& io, const std::string& path, const Proxy& proxy) {
    outbox::OutboxConfig c;
    c.store = outbox::open_sqlite_store(path);
    c.make_destination = factory(io, proxy);
    c.retry_schedule = {std::chrono::seconds(1)};  // retries in a test's time
    c.poll_interval = 100ms;
    return c;
}

outbox::Message text(std::string body, std::string group = {}) {
    outbox::Message m;
    m.body = std::move(body);
    m.group_id = std::move(group);
    return m;
}

// Enqueues every body to `target`; returns the ids once all are durable.
std::vector<outbox::EventId> enqueue_all(asio::io_context& io, outbox::Outbox& box,
                                         const std::string& target,
                                         const std::vector<outbox::Message>& messages) {
    std::vector<outbox::EventId> ids(messages.size());
    std::size_t done = 0;
    for (std::size_t i = 0; i < messages.size(); ++i)
        box.async_enqueue(target, messages[i], [&, i](error_code ec, outbox::EnqueueResult r) {
            INFO(r.error);
            CHECK_FALSE(ec);
            ids[i] = r.id;
            ++done;
        });
    io.restart();
    while (done < messages.size() && io.run_one_for(30s) != 0) {
    }
    REQUIRE(done == messages.size());
    return ids;
}

std::vector<outbox::TargetSummary> summarize(asio::io_context& io, outbox::Outbox& box) {
    std::optional<std::vector<outbox::TargetSummary>> out;
    box.async_summarize([&](error_code ec, std::vector<outbox::TargetSummary> t) {
        REQUIRE_FALSE(ec);
        out = std::move(t);
    });
    io.restart();
    while (!out && io.run_one_for(10s) != 0) {
    }
    REQUIRE(out);
    return std::move(*out);
}

std::uint64_t pending(asio::io_context& io, outbox::Outbox& box, std::uint64_t* dead = nullptr) {
    std::uint64_t n = 0, d = 0;
    for (const auto& t : summarize(io, box)) {
        n += t.pending;
        d += t.dead;
    }
    if (dead) *dead = d;
    return n;
}

// Runs `io` until `done()` holds (checked after each handler) or `limit` passes.
template <class Done>
bool run_until(asio::io_context& io, Done done, std::chrono::seconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!done() && std::chrono::steady_clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(100));
    return done();
}

// What the queue holds, read back by the AWS SDK for JavaScript: body -> how many times.
std::map<std::string, int> read_back(const std::string& queue, std::size_t count) {
    std::map<std::string, int> seen;
    for (const auto& b : outbox::test::receive_bodies(queue, count, 30)) ++seen[b];
    return seen;
}

}  // namespace

TEST_CASE("a closed relay leaves its event loop: no timer of its outlives the close", "[outbox]") {
    // The lease timer fires every millisecond while the loop runs on its own thread; the
    // close comes at a different moment each round. In some, the timer's wait has ended and
    // its handler waits its turn when the close finishes: the cancel reaches nothing.
    TempDir dir;
    std::size_t left_running = 0;
    for (int round = 0; round < 100; ++round) {
        asio::io_context io;
        outbox::OutboxConfig c;
        c.store = outbox::open_sqlite_store(dir.file("events.db"));
        c.make_destination = [](const std::string&) -> std::unique_ptr<outbox::Destination> {
            return nullptr;  // no event is stored: never called
        };
        c.poll_interval = 1ms;
        std::optional<outbox::Outbox> box(std::in_place, io.get_executor(), std::move(c));
        auto work = asio::make_work_guard(io);
        std::promise<void> ran_out;
        std::thread runner([&] {
            io.run();
            ran_out.set_value();
        });
        // Not a wait for anything: it moves the moment of the close across the timer's period.
        const auto close_at =
            std::chrono::steady_clock::now() + std::chrono::microseconds(37 * round);
        while (std::chrono::steady_clock::now() < close_at) {
        }
        std::promise<error_code> closed;
        box->async_close(1s, [&](error_code ec) { closed.set_value(ec); });
        auto closing = closed.get_future();
        REQUIRE(closing.wait_for(10s) == std::future_status::ready);
        CHECK_FALSE(closing.get());
        work.reset();
        if (ran_out.get_future().wait_for(5s) != std::future_status::ready) {
            ++left_running;
            io.stop();
        }
        runner.join();
        box.reset();
    }
    CHECK(left_running == 0);
}

TEST_CASE("enqueued events are durable at once and delivered by the relay, many per commit",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-relay-basic");
    asio::io_context io;
    outbox::Outbox box(io.get_executor(), config_for(io, dir.file("events.db"), proxy));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 300; ++i) messages.push_back(text("event " + std::to_string(i)));
    const auto ids = enqueue_all(io, box, queue, messages);
    CHECK(std::set<outbox::EventId>(ids.begin(), ids.end()).size() == 300);
    CHECK(box.stats().commits < 300);  // group commit: concurrent enqueues share transactions
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 300; }));
    CHECK(pending(io, box) == 0);
    const auto seen = read_back(queue, 300);
    CHECK(seen.size() == 300);
    for (const auto& [body, n] : seen) CHECK(n == 1);
    CHECK(proxy.stat("signature_failures") == 0);
}

TEST_CASE("trace context survives the store: attributes as sent, X-Ray's as AWSTraceHeader",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-relay-trace");
    asio::io_context io;
    outbox::Outbox box(io.get_executor(), config_for(io, dir.file("events.db"), proxy));
    const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const std::string xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    outbox::Message m = text("traced through the outbox");
    m.traceparent = traceparent;
    m.tracestate = "congo=t61rcWkgMzE";
    m.aws_trace_header = xray;
    outbox::Message bad = text("refused");
    bad.traceparent = "00-zz";
    std::optional<error_code> refused;
    box.async_enqueue(queue, std::move(bad),
                      [&](error_code ec, outbox::EnqueueResult) { refused = ec; });
    enqueue_all(io, box, queue, {m});
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 1 && refused.has_value(); }));
    CHECK(*refused == outbox::Errc::invalid_message);  // refused before it was stored

    simdjson::dom::parser parser;
    simdjson::dom::object sent = parser.parse(proxy.last_body());
    simdjson::dom::object entry = sent;
    if (sent["Entries"].error() == simdjson::SUCCESS) entry = sent["Entries"].at(0);
    CHECK(std::string_view(entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]) ==
          xray);
    simdjson::dom::parser back_parser;
    simdjson::dom::array back =
        back_parser.parse(outbox::test::receive_json(queue, 1, 30)).get_array();
    REQUIRE(back.size() == 1);
    simdjson::dom::object attributes = back.at(0)["attributes"];
    CHECK(std::string_view(attributes["traceparent"]["value"]) == traceparent);
    CHECK(std::string_view(attributes["tracestate"]["value"]) == "congo=t61rcWkgMzE");
    CHECK(attributes["AWSTraceHeader"].error() == simdjson::NO_SUCH_FIELD);  // not an attribute
}

TEST_CASE(
    "a destination down for longer than any in-memory deadline: events wait in the "
    "store, none dead, and arrive when it is back",
    "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-relay-outage");
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    config.max_age = 1h;
    outbox::Outbox box(io.get_executor(), std::move(config));
    proxy.outage(6);  // three times the destination's own 2 s message deadline
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 20; ++i) messages.push_back(text("patient " + std::to_string(i)));
    enqueue_all(io, box, queue, messages);
    REQUIRE(run_until(io, [&] { return box.stats().retried > 0; }));
    CHECK(box.stats().dead == 0);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 20; }));
    CHECK(box.stats().dead == 0);
    CHECK(read_back(queue, 20).size() == 20);
}

TEST_CASE(
    "past its maximum age an event is a dead letter kept in the store; redrive delivers "
    "it",
    "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-relay-dead");
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    config.max_age = 2s;
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::mutex mutex;
    std::vector<outbox::DeadLetter> letters;
    box.set_dead_letter_handler([&](outbox::DeadLetter&& l) {
        std::lock_guard lock(mutex);
        letters.push_back(std::move(l));
    });
    proxy.outage(8);
    enqueue_all(io, box, queue, {text("too late")});
    REQUIRE(run_until(io, [&] { return box.stats().dead == 1; }));
    {
        std::lock_guard lock(mutex);
        REQUIRE(letters.size() == 1);
        CHECK(letters[0].message.body == "too late");
        CHECK(letters[0].target == queue);
        INFO(letters[0].receipt.diagnostics.message);
        CHECK(letters[0].receipt.diagnostics.message.starts_with(
            "still failing after its maximum age (2 s"));
    }
    std::uint64_t dead = 0;
    CHECK(pending(io, box, &dead) == 0);
    CHECK(dead == 1);
    run_until(
        io, [] { return false; }, 7s);  // the outage ends
    std::optional<std::uint64_t> redriven;
    box.async_redrive("", [&](error_code ec, std::uint64_t n) {
        CHECK_FALSE(ec);
        redriven = n;
    });
    REQUIRE(run_until(io, [&] { return redriven.has_value(); }));
    CHECK(*redriven == 1);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 1; }));
    CHECK(read_back(queue, 1).count("too late") == 1);
}

TEST_CASE("an on_settled that throws is logged; every outcome is still counted and kept",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-relay-settled-throws");
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    std::size_t told = 0, threw_logged = 0;  // the I/O runs on this thread only
    config.on_settled = [&](const outbox::EventOutcome&) {
        ++told;
        throw std::runtime_error("the report is full");
    };
    config.logger = outbox::Logger{
        outbox::LogLevel::error, [&](outbox::LogLevel, std::string_view line) {
            if (line.find("on_settled threw: the report is full") != std::string_view::npos)
                ++threw_logged;
        }};
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 40; ++i) messages.push_back(text("settled " + std::to_string(i)));
    enqueue_all(io, box, queue, messages);
    enqueue_all(io, box, "not a queue url", {text("nowhere")});  // a dead letter at once
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 40 && box.stats().dead == 1; }));
    CHECK(told == 41);
    CHECK(threw_logged == 41);
    CHECK(pending(io, box) == 0);
    const auto seen = read_back(queue, 40);
    CHECK(seen.size() == 40);
}

TEST_CASE("a destination that throws fails that attempt; the event is retried and delivered",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    // An application's destination: throws on each message's first attempt, delivers the
    // second. The I/O runs on one thread.
    std::map<std::string, int> attempts;  // by body
    config.make_destination = [&](const std::string&) {
        return std::make_unique<outbox::test::FunctionDestination>(
            io.get_executor(), [&](const outbox::Message& m) {
                if (++attempts[m.body] == 1) throw std::runtime_error("the connector is broken");
                outbox::test::FunctionDestination::Outcome o;
                o.receipt.attempts = 1;
                return o;
            });
    };
    std::string logged;
    config.logger = outbox::Logger{
        outbox::LogLevel::info,
        [&](outbox::LogLevel, std::string_view line) { logged.append(line).append("\n"); }};
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 30; ++i) messages.push_back(text("thrown " + std::to_string(i)));
    enqueue_all(io, box, "connector://app", messages);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 30; }));
    CHECK(box.stats().retried == 30);
    CHECK(box.stats().dead == 0);
    CHECK(attempts.size() == 30);
    for (const auto& [body, n] : attempts) CHECK(n == 2);
    CHECK(logged.find("the destination threw: the connector is broken") != std::string::npos);
    CHECK(pending(io, box) == 0);
}

namespace {

// An application's store: SQLite underneath, but its first enqueue, claim and settle each
// throw something that is not a StoreError (the claim not even a std::exception).
class ThrowsOnceStore final : public outbox::OutboxStore {
  public:
    explicit ThrowsOnceStore(const std::string& path) : inner_(outbox::open_sqlite_store(path)) {}
    std::atomic<int> enqueue_throws{1}, claim_throws{1}, settle_throws{1};

    bool nameless = false;  // describe() throws too
    std::optional<std::uint64_t> reported_size;

    std::string describe() const override {
        if (nameless) throw std::runtime_error("no name");
        return "app:" + inner_->describe();
    }
    std::string identity() const override { return inner_->identity(); }
    std::string refusal(const std::string&, const outbox::Message& message) const override {
        if (message.body == "refusal throws") throw std::logic_error("the refusal broke");
        return {};
    }
    void enqueue(std::span<const outbox::NewEvent> events,
                 std::vector<outbox::EventId>& ids) override {
        if (enqueue_throws-- > 0) throw std::runtime_error("the disk is on fire");
        inner_->enqueue(events, ids);
    }
    std::vector<outbox::StoredEvent> claim(outbox::SystemTime now, std::size_t limit,
                                           const outbox::TargetBound& targets) override {
        if (claim_throws-- > 0) throw 7;
        return inner_->claim(now, limit, targets);
    }
    void settle(std::span<const outbox::EventOutcome> outcomes) override {
        if (settle_throws-- > 0) throw std::runtime_error("settling is refused");
        inner_->settle(outcomes);
    }
    void release_claims() override { inner_->release_claims(); }
    void lock_for_relay() override { inner_->lock_for_relay(); }
    std::optional<outbox::SystemTime> next_due() override { return inner_->next_due(); }
    std::optional<outbox::StoredEvent> find(outbox::EventId id) override {
        return inner_->find(id);
    }
    bool has_pending() override { return inner_->has_pending(); }
    std::vector<outbox::TargetSummary> summarize() override { return inner_->summarize(); }
    std::vector<outbox::StoredEvent> dead_letters(const std::string& target,
                                                  std::size_t limit) override {
        return inner_->dead_letters(target, limit);
    }
    std::uint64_t redrive(const std::string& target, outbox::SystemTime now) override {
        return inner_->redrive(target, now);
    }
    std::uint64_t purge(const std::string& target) override { return inner_->purge(target); }
    std::uint64_t size_bytes() override { return reported_size.value_or(inner_->size_bytes()); }

  private:
    outbox::OutboxStorePtr inner_;
};

}  // namespace

TEST_CASE("a store that throws what is not a StoreError: that enqueue fails, the relay goes on",
          "[outbox]") {
    TempDir dir;
    asio::io_context io;
    outbox::OutboxConfig config;
    auto store = std::make_unique<ThrowsOnceStore>(dir.file("events.db"));
    ThrowsOnceStore& flaky = *store;
    config.store = std::move(store);
    std::map<std::string, int> deliveries;  // by body; the I/O runs on one thread
    config.make_destination = [&](const std::string&) {
        return std::make_unique<outbox::test::FunctionDestination>(
            io.get_executor(), [&](const outbox::Message& m) {
                ++deliveries[m.body];
                return outbox::test::FunctionDestination::Outcome{};
            });
    };
    config.retry_schedule = {std::chrono::seconds(1)};
    config.poll_interval = 100ms;
    std::mutex log_mutex;  // the store's thread logs too
    std::string logged;
    config.logger =
        outbox::Logger{outbox::LogLevel::warning, [&](outbox::LogLevel, std::string_view line) {
                           std::lock_guard lock(log_mutex);
                           logged.append(line).append("\n");
                       }};
    outbox::Outbox box(io.get_executor(), std::move(config));

    // The first enqueue meets the throw: refused with store_error, saying what was thrown.
    std::optional<error_code> first;
    std::string first_why;
    box.async_enqueue("app://orders", text("never stored"),
                      [&](error_code ec, outbox::EnqueueResult r) {
                          first = ec;
                          first_why = r.error;
                      });
    REQUIRE(run_until(io, [&] { return first.has_value(); }));
    CHECK(*first == outbox::Errc::store_error);
    CHECK(first_why.find("the store threw: the disk is on fire") != std::string::npos);
    // refusal() runs on the enqueueing thread: its throw refuses that event there.
    std::optional<error_code> refused;
    box.async_enqueue("app://orders", text("refusal throws"),
                      [&](error_code ec, outbox::EnqueueResult r) {
                          refused = ec;
                          first_why = r.error;
                      });
    REQUIRE(run_until(io, [&] { return refused.has_value(); }));
    CHECK(*refused == outbox::Errc::store_error);
    CHECK(first_why == "the store threw: the refusal broke");

    std::vector<outbox::Message> messages;
    for (int i = 0; i < 20; ++i) messages.push_back(text("stored " + std::to_string(i)));
    enqueue_all(io, box, "app://orders", messages);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 20; }));
    REQUIRE(run_until(io, [&] { return pending(io, box) == 0; }));
    CHECK(flaky.claim_throws < 0);
    CHECK(flaky.settle_throws < 0);
    CHECK(deliveries.size() == 20);
    CHECK(deliveries.count("never stored") == 0);
    CHECK(deliveries.count("refusal throws") == 0);
    std::lock_guard lock(log_mutex);
    CHECK(logged.find("an exception not derived from std::exception") != std::string::npos);
    CHECK(logged.find("the store threw: settling is refused") != std::string::npos);
}

TEST_CASE("a full store whose describe() throws: the enqueue fails with store_full, still named",
          "[outbox]") {
    TempDir dir;
    asio::io_context io;
    outbox::OutboxConfig config;
    auto store = std::make_unique<ThrowsOnceStore>(dir.file("events.db"));
    store->enqueue_throws = 0;
    store->nameless = true;
    store->reported_size = std::uint64_t{1} << 40;
    config.store = std::move(store);
    config.relay = false;
    config.max_store_bytes = 1024;
    config.fail_when_full = true;
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::optional<error_code> result;
    std::string why;
    box.async_enqueue("app://orders", text("no room"), [&](error_code ec, outbox::EnqueueResult r) {
        result = ec;
        why = r.error;
    });
    REQUIRE(run_until(io, [&] { return result.has_value(); }));
    CHECK(*result == outbox::Errc::store_full);
    CHECK(why.starts_with("the store holds 1099511627776 bytes of events"));
}

TEST_CASE("a max_age or retry step past a century is refused at construction, not overflowed",
          "[outbox]") {
    TempDir dir;
    asio::io_context io;
    auto config_with = [&](std::chrono::seconds max_age, std::chrono::seconds step) {
        outbox::OutboxConfig c;
        c.store = outbox::open_sqlite_store(dir.file("events.db"));
        c.relay = false;
        c.max_age = max_age;
        c.retry_schedule = {std::chrono::seconds(5), step};
        return c;
    };
    const auto century = outbox::longest_retry_wait;
    CHECK_THROWS_WITH(
        outbox::Outbox(io.get_executor(), config_with(century + std::chrono::seconds(1), 5min)),
        "Outbox: max_age must be 1 s to 36500 days");
    CHECK_THROWS_WITH(
        outbox::Outbox(io.get_executor(), config_with(72h, century + std::chrono::seconds(1))),
        "Outbox: each step of retry_schedule must be 0 s to 36500 days");
    CHECK_NOTHROW(outbox::Outbox(io.get_executor(), config_with(century, century)));
}

TEST_CASE("a relay whose credentials fail for a while retries its events; none is a dead letter",
          "[outbox]") {
    TempDir dir;
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_sqlite_store(dir.file("events.db"));
    config.retry_schedule = {std::chrono::seconds(1)};
    config.poll_interval = 100ms;
    // The keys are missing for each event's first attempt (say, the instance metadata service
    // was down), then back.
    std::map<std::string, int> attempts;  // by body; the I/O runs on one thread
    config.make_destination = [&](const std::string&) {
        return std::make_unique<outbox::test::FunctionDestination>(
            io.get_executor(), [&](const outbox::Message& m) {
                outbox::test::FunctionDestination::Outcome o;
                if (++attempts[m.body] == 1) {
                    o.ec = outbox::Errc::credentials_not_found;
                    o.receipt.diagnostics.message = "no AWS credentials found; tried imds";
                }
                return o;
            });
    };
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 10; ++i) messages.push_back(text("keyed " + std::to_string(i)));
    enqueue_all(io, box, "app://orders", messages);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 10; }));
    CHECK(box.stats().retried == 10);
    CHECK(box.stats().dead == 0);
    for (const auto& [body, n] : attempts) CHECK(n == 2);
}

TEST_CASE("a make_destination that throws anything makes a dead letter that says so", "[outbox]") {
    TempDir dir;
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    config.make_destination = [](const std::string&) -> std::unique_ptr<outbox::Destination> {
        throw 42;  // not a std::exception
    };
    std::string logged;
    config.logger = outbox::Logger{
        outbox::LogLevel::warning,
        [&](outbox::LogLevel, std::string_view line) { logged.append(line).append("\n"); }};
    outbox::Outbox box(io.get_executor(), std::move(config));
    enqueue_all(io, box, "connector://nowhere", {text("unroutable")});
    REQUIRE(run_until(io, [&] { return box.stats().dead == 1; }));
    CHECK(logged.find("no destination for \"connector://nowhere\": an exception not derived "
                      "from std::exception") != std::string::npos);
}

TEST_CASE("a refusal is a dead letter at once; a target no destination can be made for too",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    asio::io_context io;
    outbox::Outbox box(io.get_executor(), config_for(io, dir.file("events.db"), proxy));
    const std::string missing = fauxqs().url() + "/000000000000/outbox-no-such-queue";
    enqueue_all(io, box, missing, {text("nowhere")});
    enqueue_all(io, box, "not a queue url", {text("nothing")});
    REQUIRE(run_until(io, [&] { return box.stats().dead == 2; }));
    CHECK(box.stats().retried == 0);
    std::optional<std::vector<outbox::StoredEvent>> letters;
    box.async_dead_letters("", 10, [&](error_code ec, std::vector<outbox::StoredEvent> l) {
        CHECK_FALSE(ec);
        letters = std::move(l);
    });
    REQUIRE(run_until(io, [&] { return letters.has_value(); }));
    REQUIRE(letters->size() == 2);
    CHECK(((*letters)[0].last_error.find("QueueDoesNotExist") != std::string::npos ||
           (*letters)[0].last_error.find("NonExistentQueue") != std::string::npos));
    CHECK((*letters)[1].last_error.starts_with("no destination for \"not a queue url\""));
}

TEST_CASE(
    "a restart delivers what was in flight; on a FIFO queue the store's ids drop the "
    "duplicates; order holds per group",
    "[outbox]") {
    TempDir dir;
    const std::string path = dir.file("events.db");
    const std::string queue = create_queue(
        "outbox-relay-restart.fifo", R"({"FifoQueue":"true","ContentBasedDeduplication":"false"})");
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 60; ++i)
        messages.push_back(text(std::string(1, "abc"[i % 3]) + "-" + std::to_string(i / 3),
                                std::string(1, "abc"[i % 3])));
    {
        // Replies lost half the time: events are in flight, some stored, when it stops.
        Proxy lossy({"--faults", "lost=0.5", "--seed", "7"});
        asio::io_context io;
        outbox::Outbox box(io.get_executor(), config_for(io, path, lossy));
        enqueue_all(io, box, queue, messages);
        run_until(io, [&] { return box.stats().delivered >= 10; });
    }  // destroyed mid-flight, as a crash would leave it
    Proxy proxy;
    asio::io_context io;
    outbox::Outbox box(io.get_executor(), config_for(io, path, proxy));
    REQUIRE(run_until(
        io, [&] { return pending(io, box) == 0; }, 90s));
    // Read back in order: FIFO queues keep each group's order.
    std::map<char, std::vector<int>> per_group;
    std::map<std::string, int> copies;
    for (const auto& b : outbox::test::receive_bodies(queue, 60, 30)) {
        ++copies[b];
        per_group[b[0]].push_back(std::stoi(b.substr(2)));
    }
    CHECK(copies.size() == 60);
    for (const auto& [body, n] : copies) CHECK(n == 1);  // deduplicated by the event ids
    for (const auto& [group, seq] : per_group) {
        CAPTURE(group);
        CHECK(std::is_sorted(seq.begin(), seq.end()));
    }
}

TEST_CASE(
    "enqueue refuses what can never be delivered, and waits or fails when the store is "
    "full",
    "[outbox]") {
    TempDir dir;
    Proxy proxy;
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    config.relay = false;
    config.validate = [](const std::string&, const outbox::Message& m) {
        if (m.body == "throws") throw 5;  // not a std::exception
        return m.body.empty() ? std::string("the body is empty") : std::string();
    };
    config.max_store_bytes = 64 * 1024;
    config.fail_when_full = true;
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<std::pair<error_code, outbox::EnqueueResult>> results;
    auto keep = [&](error_code ec, outbox::EnqueueResult r) { results.emplace_back(ec, r); };
    box.async_enqueue("", text("no target"), keep);
    box.async_enqueue("q", text(""), keep);
    box.async_enqueue("q", text("throws"), keep);
    io.run();
    REQUIRE(results.size() == 3);
    CHECK(results[0].first == outbox::Errc::invalid_argument);
    CHECK(results[1].first == outbox::Errc::invalid_message);
    CHECK(results[1].second.error == "the body is empty");
    CHECK(results[2].first == outbox::Errc::invalid_message);
    CHECK(results[2].second.error ==
          "the validate function threw: an exception not derived from std::exception");
    results.clear();
    for (int i = 0; i < 200; ++i) {
        box.async_enqueue("q", text(std::string(2000, 'x')), keep);
        io.restart();
        io.run();
        if (results.back().first) break;
    }
    CHECK(results.back().first == outbox::Errc::store_full);
    CHECK(results.back().second.error.find("its limit (max_store_bytes) is 65536") !=
          std::string::npos);
}

TEST_CASE("a target whose deliveries hang holds only its share of the relay; the others flow",
          "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-beside-hanging");
    outbox::test::TestHttpServer never([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.action = outbox::test::TestReply::Action::hold;
        return reply;
    });
    const std::string hanging = "http://sqs.us-east-1.127.0.0.1/000000000000/hanging";
    asio::io_context io;
    auto config = config_for(io, dir.file("events.db"), proxy);
    auto healthy = factory(io, proxy);
    config.make_destination =
        [&](const std::string& target) -> std::unique_ptr<outbox::Destination> {
        if (target != hanging) return healthy(target);
        outbox::SqsDestinationConfig c;
        c.queue_url = target;
        c.endpoint = never.url();
        c.region = "us-east-1";
        c.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{access_key, secret_key});
        c.max_message_size = 262144;  // no lookup first: the sends themselves hang
        c.retry.message_deadline = 120s;
        c.http.request_timeout = 120s;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
    config.max_in_flight = 64;
    config.max_in_flight_per_target = 8;
    outbox::Outbox box(io.get_executor(), std::move(config));
    std::vector<outbox::Message> stuck, fine;
    for (int i = 0; i < 200; ++i) stuck.push_back(text("h" + std::to_string(i)));
    for (int i = 0; i < 100; ++i) fine.push_back(text("healthy " + std::to_string(i)));
    enqueue_all(io, box, hanging, stuck);  // first in the store
    enqueue_all(io, box, queue, fine);
    REQUIRE(run_until(io, [&] { return box.stats().delivered == 100; }));
    // Delivered while none of the hanging deliveries has ended, and those are its share only.
    // (Seen once under ASan: in flight 5. What the counters said then tells why next time.)
    const auto seen = box.stats();
    INFO("delivered " << seen.delivered << ", retried " << seen.retried << ", dead " << seen.dead
                      << ", in flight " << seen.in_flight);
    CHECK(box.stats().retried == 0);
    CHECK(box.stats().in_flight == 8);
    CHECK(read_back(queue, 100).size() == 100);
}

TEST_CASE("destroying an Outbox whose close waits for a delivery ends that close", "[outbox]") {
    TempDir dir;
    outbox::test::TestHttpServer never([](const outbox::test::TestRequest&) {
        outbox::test::TestReply reply;
        reply.action = outbox::test::TestReply::Action::hold;
        return reply;
    });
    asio::io_context io;
    outbox::OutboxConfig config;
    config.store = outbox::open_sqlite_store(dir.file("events.db"));
    config.make_destination = [&](const std::string& target) {
        outbox::SqsDestinationConfig c;
        c.queue_url = target;
        c.endpoint = never.url();
        c.region = "us-east-1";
        c.credentials = outbox::make_static_credentials(
            io.get_executor(), outbox::Credentials{access_key, secret_key});
        c.max_message_size = 262144;  // no lookup first: the send itself hangs
        c.retry.message_deadline = 120s;
        c.http.request_timeout = 120s;
        return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
    };
    std::optional<outbox::Outbox> box(std::in_place, io.get_executor(), std::move(config));
    enqueue_all(io, *box, "http://sqs.us-east-1.127.0.0.1/000000000000/held", {text("held")});
    REQUIRE(run_until(io, [&] { return never.requests() == 1; }));
    std::optional<error_code> closed;
    box->async_close(60s, [&](error_code ec) { closed = ec; });
    io.poll();  // the close has begun: it waits for the held delivery
    REQUIRE_FALSE(closed);
    box.reset();
    io.restart();
    io.run_for(10s);
    REQUIRE(closed);
    CHECK(*closed == asio::error::operation_aborted);
    CHECK(io.stopped());
}

TEST_CASE(
    "a target failing in a row opens its breaker: its events wait in the store with no "
    "request; a probe after the wait is delivered and the rest follow",
    "[outbox]") {
    TempDir dir;
    Proxy proxy;
    const std::string queue = create_queue("outbox-beside-broken");
    std::atomic<bool> up{false};
    std::mutex accepted_mutex;
    std::set<std::string> accepted;
    outbox::test::TestHttpServer customer([&](const outbox::test::TestRequest& r) {
        if (!up) return outbox::test::sqs_unavailable(r);
        return outbox::test::sqs_accept_all(r, [&](const std::string& body) {
            std::lock_guard lock(accepted_mutex);
            accepted.insert(body);
        });
    });
    const std::string broken = "http://sqs.us-east-1.127.0.0.1/000000000000/broken";
    std::vector<outbox::Message> waiting, fine;
    for (int i = 0; i < 20; ++i) waiting.push_back(text("waiting " + std::to_string(i)));
    for (int i = 0; i < 20; ++i) fine.push_back(text("fine " + std::to_string(i)));
    std::mutex health_mutex;
    std::vector<std::string> health;  // "health consecutive_failures"
    auto configure = [&](asio::io_context& io) {
        auto config = config_for(io, dir.file("events.db"), proxy);
        auto healthy = factory(io, proxy);
        config.make_destination =
            [&, healthy](const std::string& target) -> std::unique_ptr<outbox::Destination> {
            if (target != broken) return healthy(target);
            outbox::SqsDestinationConfig c;
            c.queue_url = target;
            c.endpoint = customer.url();
            c.region = "us-east-1";
            c.credentials = outbox::make_static_credentials(
                io.get_executor(), outbox::Credentials{access_key, secret_key});
            c.max_message_size = 262144;  // no lookup first: every request is a send
            c.retry.max_attempts = 2;
            c.retry.base_delay = 5ms;
            return std::make_unique<outbox::SqsDestination>(io.get_executor(), c);
        };
        config.max_in_flight_per_target = 1;  // one at a time: the run of failures is exact
        config.on_target_health = [&](const outbox::TargetHealthEvent& e) {
            std::lock_guard lock(health_mutex);
            health.push_back(std::string(outbox::to_string(e.health)) + " " +
                             std::to_string(e.consecutive_failures));
            if (e.health == outbox::TargetHealth::open) {
                CHECK(e.last_error == outbox::Errc::service_unavailable);
                CHECK(e.last_diagnostics.service_message == "down for maintenance");
            }
        };
        return config;
    };

    {  // Three failed deliveries open the breaker (degraded at two); no probe within the run.
        asio::io_context io;
        auto config = configure(io);
        config.breaker.failures_to_open = 3;
        config.breaker.open_for = std::chrono::hours(1);
        config.breaker.max_open_for = std::chrono::hours(1);
        outbox::Outbox box(io.get_executor(), std::move(config));
        enqueue_all(io, box, broken, waiting);  // first in the store
        enqueue_all(io, box, queue, fine);
        REQUIRE(run_until(io, [&] { return box.stats().delivered == 20; }));
        REQUIRE(run_until(io, [&] { return box.stats().retried == 3; }));
        // Only the three failed events were tried, two requests each; the other 17 wait.
        CHECK(customer.requests() == 6);
        CHECK(pending(io, box) == 20);
        CHECK(box.stats().in_flight == 0);
        CHECK(read_back(queue, 20).size() == 20);
        {
            std::lock_guard lock(health_mutex);
            CHECK(health == std::vector<std::string>{"degraded 2", "open 3"});
            health.clear();
        }
        // The store keeps the breaker: another process opening it sees what the relay saw.
        outbox::SqliteStoreOptions existing;
        existing.create_if_missing = false;
        auto other = outbox::open_sqlite_store(dir.file("events.db"), existing);
        const auto seen = other->summarize();
        const auto it = std::find_if(seen.begin(), seen.end(),
                                     [&](const auto& t) { return t.target == broken; });
        REQUIRE(it != seen.end());
        CHECK(it->health == outbox::TargetHealth::open);
        CHECK(it->consecutive_failures == 3);
        CHECK(it->pending == 20);
        REQUIRE(it->next_probe_at);
        const auto probe_in = *it->next_probe_at - std::chrono::system_clock::now();
        CHECK(probe_in > 59min);
        CHECK(probe_in <= 60min);
        CHECK(it->last_error.find("down for maintenance") != std::string::npos);
    }
    {  // A new relay starts with closed breakers. One failure opens this one; the customer's
        // queue comes back as it opens; the probe after half a second closes it.
        asio::io_context io;
        auto config = configure(io);
        config.breaker.failures_to_open = 1;
        config.breaker.open_for = 500ms;
        config.breaker.max_open_for = 500ms;
        auto told = config.on_target_health;
        config.on_target_health = [&, told](const outbox::TargetHealthEvent& e) {
            told(e);
            if (e.health == outbox::TargetHealth::open) up = true;
        };
        outbox::Outbox box(io.get_executor(), std::move(config));
        REQUIRE(run_until(io, [&] { return pending(io, box) == 0; }));
        {
            std::lock_guard lock(health_mutex);
            CHECK(health == std::vector<std::string>{"open 1", "healthy 0"});
        }
        // Healthy again: the store keeps no breaker (nor the first relay's, forgotten at start).
        for (const auto& t : summarize(io, box)) CHECK(t.health == outbox::TargetHealth::healthy);
    }
    std::lock_guard lock(accepted_mutex);
    CHECK(accepted.size() == 20);
}
