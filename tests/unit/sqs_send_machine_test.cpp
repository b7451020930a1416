// The SQS destination's decisions without a network or a clock: sqs::SendMachine driven with
// made-up times and replies, every action it answers with checked.
#include "catch.hpp"

#include "aws/sqs/sqs_send_machine.hpp"

#include <outbox/error.hpp>

#include <boost/asio/error.hpp>

#include <simdjson.h>

#include <map>

using namespace std::chrono_literals;
namespace sqs = outbox::detail::sqs;
using Machine = sqs::SendMachine;
using outbox::Errc;
using outbox::HttpResponse;
using outbox::Message;

namespace {

const std::string standard_queue = "http://127.0.0.1:1/000000000000/orders";
const std::string fifo_queue = "http://127.0.0.1:1/000000000000/orders.fifo";

// One machine, its configuration and counters, and a clock that moves only when told.
struct Rig {
    outbox::SqsDestinationConfig config;
    outbox::detail::DestinationCounters stats;
    std::optional<Machine> machine;
    Machine::Time now = Machine::Time{} + 1000h;
    Machine::Actions out;

    explicit Rig(std::function<void(outbox::SqsDestinationConfig&)> adjust = {},
                 const std::string& queue = standard_queue) {
        config.queue_url = queue;
        config.max_message_size = 262144;
        config.linger = 0ms;
        config.retry.base_delay = 100ms;
        config.retry.max_delay = 1s;
        config.retry.message_deadline = 60s;
        if (adjust) adjust(config);
        machine.emplace(config, queue, queue.ends_with(".fifo"), stats, 7);
    }

    // Each call returns what the machine answered to that event alone.
    Machine::Actions& send(std::string body, std::string group = {}, std::string dedup = {}) {
        out = {};
        Message m;
        m.body = std::move(body);
        m.group_id = std::move(group);
        m.deduplication_id = std::move(dedup);
        const auto size = sqs::message_size(m);
        seqs.push_back(machine->accept(std::move(m), size, now, out));
        return out;
    }
    Machine::Actions& answer(const Machine::Call& call, HttpResponse res,
                             boost::system::error_code ec = {}) {
        const auto id = call.id;  // `call` may be in `out`, which is emptied now
        out = {};
        machine->call_answered(id, ec, std::move(res), now, out);
        return out;
    }
    Machine::Actions& advance_to_wake() {
        REQUIRE(machine->next_wake());
        now = std::max(now, *machine->next_wake());
        out = {};
        machine->wake(now, out);
        return out;
    }
    std::vector<std::uint64_t> seqs;
};

// The bodies a call carries, in entry order.
std::vector<std::string> bodies_of(const Machine::Call& call) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(call.body);
    std::vector<std::string> out;
    simdjson::dom::array entries;
    if (doc["Entries"].get(entries) == simdjson::SUCCESS) {
        for (auto e : entries) out.emplace_back(std::string_view(e["MessageBody"]));
    } else {
        out.emplace_back(std::string_view(doc["MessageBody"]));
    }
    return out;
}

std::string md5(const std::string& body) {
    const auto h = sqs::md5_of_body(body);
    return std::string(h.data(), h.size());
}

HttpResponse reply(unsigned status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers.emplace_back("x-amzn-RequestId", "req-1");
    return r;
}

// A SendMessageBatch reply: entries named in `failed` (by index, with their code and fault)
// failed, every other one succeeded with the right digest.
HttpResponse batch_reply(const Machine::Call& call,
                         std::map<std::size_t, std::pair<std::string, bool>> failed = {}) {
    const auto bodies = bodies_of(call);
    std::string ok, bad;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        if (auto f = failed.find(i); f != failed.end()) {
            bad += std::string(bad.empty() ? "" : ",") + "{\"Id\":\"" + std::to_string(i) +
                   "\",\"Code\":\"" + f->second.first + "\",\"Message\":\"no\",\"SenderFault\":" +
                   (f->second.second ? "true" : "false") + "}";
            continue;
        }
        ok += std::string(ok.empty() ? "" : ",") + "{\"Id\":\"" + std::to_string(i) +
              "\",\"MessageId\":\"m" + std::to_string(i) + "\",\"MD5OfMessageBody\":\"" +
              md5(bodies[i]) + "\"}";
    }
    return reply(200, "{\"Successful\":[" + ok + "],\"Failed\":[" + bad + "]}");
}

HttpResponse single_reply(const Machine::Call& call, std::string digest = {}) {
    const auto body = bodies_of(call).at(0);
    return reply(200, "{\"MessageId\":\"m\",\"MD5OfMessageBody\":\"" +
                          (digest.empty() ? md5(body) : digest) + "\"}");
}

HttpResponse error_reply(unsigned status, const std::string& code, const std::string& message) {
    return reply(status,
                 "{\"__type\":\"com.amazonaws.sqs#" + code + "\",\"message\":\"" + message + "\"}");
}

std::string body_n(int i) {
    return "event-" + std::to_string(i);
}

}  // namespace

TEST_CASE("send machine: messages go out in batches of ten, or after the linger with fewer") {
    Rig rig([](auto& c) { c.linger = 2ms; });
    std::vector<Machine::Call> calls;
    for (int i = 0; i < 25; ++i) {
        auto& out = rig.send(body_n(i));
        CHECK(out.completions.empty());
        for (auto& c : out.calls) calls.push_back(std::move(c));
    }
    // Ten and ten at once (full batches do not wait); five wait for the linger.
    REQUIRE(calls.size() == 2);
    CHECK(std::string(calls[0].action) == "SendMessageBatch");
    CHECK(bodies_of(calls[0]).size() == 10);
    CHECK(bodies_of(calls[0])[0] == body_n(0));
    CHECK(bodies_of(calls[1])[9] == body_n(19));
    CHECK(calls[0].deadline == rig.now + 60s);  // the earliest deadline among its messages
    REQUIRE(rig.machine->next_wake() == rig.now + 2ms);
    auto& later = rig.advance_to_wake();
    REQUIRE(later.calls.size() == 1);
    CHECK(bodies_of(later.calls[0]) ==
          std::vector<std::string>{body_n(20), body_n(21), body_n(22), body_n(23), body_n(24)});
    calls.push_back(later.calls[0]);

    std::size_t delivered = 0;
    for (auto& call : calls) {
        auto& done = rig.answer(call, batch_reply(call));
        for (auto& c : done.completions) {
            CHECK_FALSE(c.ec);
            CHECK(c.receipt.attempts == 1);
            CHECK(c.receipt.message_id.starts_with("m"));
            ++delivered;
        }
    }
    CHECK(delivered == 25);
    CHECK(rig.machine->messages() == 0);
    CHECK_FALSE(rig.machine->next_wake());  // nothing left to wake for
}

TEST_CASE("send machine: a batch is also cut by bytes, at the queue's maximum message size") {
    Rig rig([](auto& c) {
        c.max_message_size = 1000;
        c.max_concurrent_requests = 1;
    });
    auto& first = rig.send(std::string(100, 'a'));  // alone: nothing else was waiting
    REQUIRE(first.calls.size() == 1);
    const auto head = first.calls[0];
    for (int i = 0; i < 6; ++i) CHECK(rig.send(std::string(300, 'b' + i)).calls.empty());
    auto& next = rig.answer(head, single_reply(head));
    CHECK(next.completions.size() == 1);
    REQUIRE(next.calls.size() == 1);
    CHECK(bodies_of(next.calls[0]).size() == 3);  // 3 x 300 bytes fit 1000, a fourth does not
}

TEST_CASE("send machine: a failed message completes whole, a delivered one with its body") {
    Rig rig([](auto& c) { c.max_concurrent_requests = 1; });
    auto& first = rig.send(body_n(0));  // alone, at once
    REQUIRE(first.calls.size() == 1);
    const auto lone = first.calls[0];
    Message m;
    m.body = body_n(1);
    m.attributes.push_back({"kind", "String", "order"});
    m.idempotency_key = "key-1";
    m.target = "orders";
    const auto size = sqs::message_size(m);
    rig.out = {};
    rig.machine->accept(std::move(m), size, rig.now, rig.out);  // waits for the lone call
    auto& delivered = rig.answer(lone, single_reply(lone));
    REQUIRE(delivered.completions.size() == 1);
    CHECK_FALSE(delivered.completions[0].ec);
    CHECK(delivered.completions[0].message.body == body_n(0));  // its size is counted
    CHECK(delivered.completions[0].receipt.message_id == "m");
    REQUIRE(delivered.calls.size() == 1);
    const auto next = delivered.calls[0];
    auto& refused = rig.answer(next, error_reply(400, "InvalidParameterValue", "bad"));
    REQUIRE(refused.completions.size() == 1);
    const auto& failed = refused.completions[0];
    CHECK(failed.ec == Errc::service_error);
    // The dead letter gets the message as it was sent.
    CHECK(failed.message.body == body_n(1));
    REQUIRE(failed.message.attributes.size() == 1);
    CHECK(failed.message.attributes[0].value == "order");
    CHECK(failed.message.idempotency_key == "key-1");
    CHECK(failed.message.target == "orders");
    CHECK(failed.receipt.diagnostics.code == "InvalidParameterValue");
}

TEST_CASE("send machine: a partial batch failure retries only what failed, after a backoff") {
    Rig rig([](auto& c) {
        c.max_batch_entries = 3;
        c.max_concurrent_requests = 1;
    });
    auto& first = rig.send(body_n(0));  // alone, at once
    REQUIRE(first.calls.size() == 1);
    auto lone = first.calls[0];
    for (int i = 1; i <= 3; ++i) CHECK(rig.send(body_n(i)).calls.empty());  // no free request
    auto& after_first = rig.answer(lone, single_reply(lone));
    REQUIRE(after_first.calls.size() == 1);
    auto batch = after_first.calls[0];
    REQUIRE(bodies_of(batch).size() == 3);

    // Entry 1 throttled (retry), entry 2 refused for good (sender fault): 0 delivered now.
    auto& outcome = rig.answer(batch, batch_reply(batch, {{1, {"ThrottlingException", false}},
                                                          {2, {"InvalidParameterValue", true}}}));
    REQUIRE(outcome.completions.size() == 2);
    CHECK_FALSE(outcome.completions[0].ec);
    CHECK(outcome.completions[0].message.body == body_n(1));
    CHECK(outcome.completions[1].ec == Errc::service_error);
    CHECK(outcome.completions[1].message.body == body_n(3));  // the dead letter's body
    CHECK(outcome.completions[1].receipt.diagnostics.code == "InvalidParameterValue");
    CHECK(outcome.calls.empty());
    // The throttled one backs off at most base_delay * 2^(attempts-1) = 100 ms.
    const auto wake = rig.machine->next_wake();
    REQUIRE(wake);
    CHECK(*wake <= rig.now + 100ms);
    auto& retry = rig.advance_to_wake();
    REQUIRE(retry.calls.size() == 1);
    CHECK(bodies_of(retry.calls[0]) == std::vector<std::string>{body_n(2)});
    CHECK(std::string(retry.calls[0].action) == "SendMessage");
    auto& done = rig.answer(retry.calls[0], single_reply(retry.calls[0]));
    REQUIRE(done.completions.size() == 1);
    CHECK_FALSE(done.completions[0].ec);
    CHECK(done.completions[0].receipt.attempts == 2);
    CHECK(rig.stats.snapshot().retried == 1);
}

TEST_CASE("send machine: digests: a wrong one fails the message, a missing one is a lost reply") {
    Rig rig([](auto& c) { c.retry.max_attempts = 2; });
    auto& sent = rig.send("hello");
    REQUIRE(sent.calls.size() == 1);
    auto& wrong = rig.answer(sent.calls[0], single_reply(sent.calls[0], std::string(32, '0')));
    REQUIRE(wrong.completions.size() == 1);
    CHECK(wrong.completions[0].ec == Errc::checksum_mismatch);

    auto& again = rig.send("hello again");
    auto call = again.calls.at(0);
    auto& missing = rig.answer(call, reply(200, "{\"MessageId\":\"m\"}"));
    CHECK(missing.completions.empty());  // retried: the reply proves nothing
    auto& retry = rig.advance_to_wake();
    REQUIRE(retry.calls.size() == 1);
    auto& last = rig.answer(retry.calls[0], reply(200, "{\"MessageId\":\"m\"}"));
    REQUIRE(last.completions.size() == 1);
    // Two replies without proof, attempts spent: it may or may not be in the queue.
    CHECK(last.completions[0].ec == Errc::outcome_unknown);
    CHECK(last.completions[0].receipt.attempts == 2);
}

TEST_CASE("send machine: digests hashed ahead with an earlier reply check their own entries") {
    // One request at a time: the rest wait ready, and a reply's spare SIMD lanes hash some of
    // them ahead (with AVX-512 the first reply hashes messages 1 to 15 ahead, the second
    // batch's 21 to 31; none with OpenSSL). Each reply must be checked against its own bodies.
    Rig rig([](auto& c) { c.max_concurrent_requests = 1; });
    const auto first = rig.send(body_n(0)).calls;  // goes alone, at once
    REQUIRE(first.size() == 1);
    for (int i = 1; i <= 40; ++i) CHECK(rig.send(body_n(i)).calls.empty());
    auto& one = rig.answer(first[0], single_reply(first[0]));
    REQUIRE(one.completions.size() == 1);
    CHECK_FALSE(one.completions[0].ec);
    std::vector<Machine::Call> calls = one.calls;
    std::size_t delivered = 0, mismatched = 0;
    for (int batch = 0; batch < 4; ++batch) {
        REQUIRE(calls.size() == 1);
        const auto call = calls.front();
        calls.clear();
        const auto bodies = bodies_of(call);
        REQUIRE(bodies.size() == 10);
        CHECK(bodies[0] == body_n(1 + batch * 10));
        // Entries 3 and 8 get a wrong digest (hashed ahead or not, by the lanes' width), the
        // others their own.
        std::string ok;
        for (std::size_t i = 0; i < bodies.size(); ++i)
            ok += std::string(ok.empty() ? "" : ",") + "{\"Id\":\"" + std::to_string(i) +
                  "\",\"MessageId\":\"m" + std::to_string(i) + "\",\"MD5OfMessageBody\":\"" +
                  (i == 3 || i == 8 ? md5("not " + bodies[i]) : md5(bodies[i])) + "\"}";
        auto& done = rig.answer(call, reply(200, "{\"Successful\":[" + ok + "],\"Failed\":[]}"));
        REQUIRE(done.completions.size() == 10);
        for (auto& c : done.completions) {
            const bool wrong = c.message.body == body_n(1 + batch * 10 + 3) ||
                               c.message.body == body_n(1 + batch * 10 + 8);
            if (wrong)
                CHECK(c.ec == Errc::checksum_mismatch);
            else
                CHECK_FALSE(c.ec);
            (wrong ? mismatched : delivered) += 1;
        }
        for (auto& c : done.calls) calls.push_back(std::move(c));
    }
    CHECK(delivered == 32);
    CHECK(mismatched == 8);
    CHECK(rig.machine->messages() == 0);
}

TEST_CASE("send machine: an entry the reply does not mention may have been stored") {
    Rig rig([](auto& c) {
        c.linger = 1ms;
        c.max_batch_entries = 2;
        c.retry.max_attempts = 1;
    });
    rig.send("a");
    auto& out = rig.send("b");
    REQUIRE(out.calls.size() == 1);
    const auto call = out.calls[0];
    // Only entry 0 in the reply.
    auto& answered = rig.answer(
        call,
        reply(200, "{\"Successful\":[{\"Id\":\"0\",\"MessageId\":\"m0\",\"MD5OfMessageBody\":\"" +
                       md5("a") + "\"}],\"Failed\":[]}"));
    REQUIRE(answered.completions.size() == 2);
    CHECK_FALSE(answered.completions[0].ec);
    CHECK(answered.completions[1].ec == Errc::outcome_unknown);
    CHECK(answered.completions[1].receipt.diagnostics.message.find("does not mention") !=
          std::string::npos);
}

TEST_CASE("send machine: a batch refused whole for one bad entry is sent again one by one") {
    Rig rig([](auto& c) { c.linger = 1ms; });
    rig.send("good");
    rig.send("bad");
    auto& out = rig.advance_to_wake();
    REQUIRE(out.calls.size() == 1);
    auto& split =
        rig.answer(out.calls[0], error_reply(400, "InvalidParameterValue", "one entry is invalid"));
    CHECK(split.completions.empty());
    REQUIRE(split.calls.size() == 2);  // each alone, at once
    CHECK(bodies_of(split.calls[0]) == std::vector<std::string>{"good"});
    CHECK(bodies_of(split.calls[1]) == std::vector<std::string>{"bad"});
    const auto good = split.calls[0], bad = split.calls[1];
    CHECK(rig.answer(good, single_reply(good)).completions.at(0).ec == boost::system::error_code());
    auto& refused = rig.answer(bad, error_reply(400, "InvalidParameterValue", "bad body"));
    REQUIRE(refused.completions.size() == 1);
    CHECK(refused.completions[0].ec == Errc::service_error);
    CHECK(refused.completions[0].receipt.attempts == 2);
}

TEST_CASE("send machine: FIFO: one message of a group on the wire at a time, others go on") {
    Rig rig(
        [](auto& c) {
            c.max_batch_entries = 1;
            c.max_message_size = 0;
        },
        fifo_queue);
    auto& first = rig.send("a1", "a", "d1");
    // A FIFO queue's attributes are read first (content-based deduplication).
    REQUIRE(first.calls.size() == 1);
    CHECK(std::string(first.calls[0].action) == "GetQueueAttributes");
    const auto lookup = first.calls[0];
    rig.send("a2", "a", "d2");
    rig.send("b1", "b", "d3");
    auto& resolved = rig.answer(lookup, reply(200,
                                              "{\"Attributes\":{\"MaximumMessageSize\":\"262144\","
                                              "\"ContentBasedDeduplication\":\"false\"}}"));
    REQUIRE(resolved.calls.size() == 2);
    CHECK(bodies_of(resolved.calls[0]) == std::vector<std::string>{"a1"});
    CHECK(bodies_of(resolved.calls[1]) == std::vector<std::string>{"b1"});  // a2 waits for a1
    const auto a1 = resolved.calls[0];
    auto& next = rig.answer(a1, single_reply(a1));
    REQUIRE(next.calls.size() == 1);
    CHECK(bodies_of(next.calls[0]) == std::vector<std::string>{"a2"});
    // Without a deduplication id, content-based deduplication off: refused before sending.
    auto& no_dedup = rig.send("c1", "c");
    REQUIRE(no_dedup.completions.size() == 1);
    CHECK(no_dedup.completions[0].ec == Errc::invalid_message);
}

TEST_CASE("send machine: deadlines: waiting for room, backing off, and on the wire") {
    Rig rig([](auto& c) {
        c.max_in_flight_messages = 1;
        c.retry.message_deadline = 5s;
    });
    auto& first = rig.send("on the wire");
    REQUIRE(first.calls.size() == 1);
    const auto call = first.calls[0];
    CHECK(call.deadline == rig.now + 5s);  // a request is cut short to meet it
    rig.now += 1s;
    CHECK(rig.send("waiting for room").calls.empty());
    CHECK(rig.stats.snapshot().waits_for_room == 1);
    // The message on the wire is bounded by its request; the waiting one by the timer.
    CHECK(rig.machine->next_wake() == rig.now + 5s);
    auto& expired = rig.advance_to_wake();
    REQUIRE(expired.completions.size() == 1);
    CHECK(expired.completions[0].ec == Errc::timeout);
    CHECK(expired.completions[0].receipt.diagnostics.message ==
          "the message deadline (5 s) passed while waiting for room");
    // The request's answer (its own timeout) completes the first.
    HttpResponse timed_out;
    timed_out.failure = "the request timed out";
    auto& late = rig.answer(call, timed_out, Errc::timeout);
    REQUIRE(late.completions.size() == 1);
    CHECK(late.completions[0].ec == Errc::timeout);
}

TEST_CASE("send machine: a lost reply, then no time for another attempt: outcome unknown") {
    Rig rig([](auto& c) {
        c.retry.message_deadline = 2s;
        c.retry.base_delay = 1ms;
        c.retry.max_delay = 60s;
    });
    auto& sent = rig.send("maybe");
    HttpResponse lost;
    lost.failure = "the connection closed after the request was sent";
    CHECK(rig.answer(sent.calls.at(0), lost, Errc::outcome_unknown).completions.empty());
    auto& retry = rig.advance_to_wake();
    REQUIRE(retry.calls.size() == 1);
    // The service asks for 30 s: past the message deadline, so no further attempt; the first
    // may have been stored.
    auto busy = error_reply(503, "ServiceUnavailable", "busy");
    busy.headers.emplace_back("Retry-After", "30");
    auto& out = rig.answer(retry.calls[0], std::move(busy));
    REQUIRE(out.completions.size() == 1);
    CHECK(out.completions[0].ec == Errc::outcome_unknown);
    CHECK(out.completions[0].receipt.diagnostics.message.find(
              "leaves no time for another attempt") != std::string::npos);
    CHECK(out.completions[0].receipt.attempts == 2);
}

TEST_CASE("send machine: cancellation fails a waiting message, not one on the wire") {
    Rig rig([](auto& c) { c.max_in_flight_messages = 1; });
    auto& first = rig.send("on the wire");
    REQUIRE(first.calls.size() == 1);
    rig.send("waiting");
    Machine::Actions out;
    rig.machine->cancel(rig.seqs[0], rig.now, out);
    CHECK(out.empty());  // on the wire: its reply decides
    rig.machine->cancel(rig.seqs[1], rig.now, out);
    REQUIRE(out.completions.size() == 1);
    CHECK(out.completions[0].ec == boost::asio::error::operation_aborted);
    CHECK(out.completions[0].message.body == "waiting");
}

TEST_CASE("send machine: close sends what backs off at once and is done when all are") {
    Rig rig;
    auto& sent = rig.send("retry me");
    auto& failed = rig.answer(sent.calls.at(0), error_reply(503, "ServiceUnavailable", "busy"));
    CHECK(failed.completions.empty());
    REQUIRE(rig.machine->next_wake());
    Machine::Actions out;
    rig.machine->close(rig.now, out);  // no waiting for the backoff
    REQUIRE(out.calls.size() == 1);
    CHECK_FALSE(out.closed);
    CHECK(rig.answer(out.calls[0], single_reply(out.calls[0])).closed ==
          boost::system::error_code());
    CHECK(rig.machine->stopped());
    // Closed: a new message fails at once.
    auto& late = rig.send("too late");
    REQUIRE(late.completions.size() == 1);
    CHECK(late.completions[0].ec == boost::asio::error::operation_aborted);
}

TEST_CASE("send machine: the close deadline fails what waits and cancels what is on the wire") {
    Rig rig([](auto& c) { c.max_in_flight_messages = 1; });
    auto& sent = rig.send("on the wire");
    const auto call = sent.calls.at(0);
    rig.send("waiting");
    Machine::Actions out;
    rig.machine->close(rig.now, out);
    CHECK(out.empty());
    rig.machine->abandon("the close deadline passed", out);
    REQUIRE(out.completions.size() == 1);
    CHECK(out.completions[0].message.body == "waiting");
    CHECK(out.completions[0].receipt.diagnostics.message == "the close deadline passed");
    CHECK(out.cancel_calls == std::vector<std::uint64_t>{call.id});
    CHECK_FALSE(out.closed);
    auto& cancelled = rig.answer(call, {}, boost::asio::error::operation_aborted);
    REQUIRE(cancelled.completions.size() == 1);
    CHECK(cancelled.completions[0].ec == boost::asio::error::operation_aborted);
    CHECK(cancelled.completions[0].receipt.diagnostics.message == "the close deadline passed");
    CHECK(cancelled.closed == boost::system::error_code(Errc::close_timeout));
}

TEST_CASE("send machine: a late wake fails what is past its deadline before sending anything") {
    Rig rig([](auto& c) {
        c.retry.message_deadline = 2s;
        c.retry.base_delay = 1ms;
    });
    auto& sent = rig.send("slow");
    CHECK(rig.answer(sent.calls.at(0), error_reply(503, "ServiceUnavailable", "busy"))
              .completions.empty());
    rig.now += 5s;  // the event loop was busy: the backoff and the deadline are both past
    Machine::Actions out;
    rig.machine->wake(rig.now, out);
    CHECK(out.calls.empty());
    REQUIRE(out.completions.size() == 1);
    CHECK(out.completions[0].ec == Errc::timeout);
    CHECK(out.completions[0].receipt.diagnostics.message ==
          "the message deadline (2 s) passed while waiting to be retried; last attempt: "
          "ServiceUnavailable: busy");
}

TEST_CASE(
    "send machine: a request cancelled after it was sent, by the close deadline, may "
    "have been stored") {
    Rig rig;
    auto& sent = rig.send("in flight");
    const auto call = sent.calls.at(0);
    Machine::Actions out;
    rig.machine->close(rig.now, out);
    rig.machine->abandon("the close deadline passed", out);
    HttpResponse cut;
    cut.failure = "cancelled after the request was sent";
    auto& answered = rig.answer(call, cut, Errc::outcome_unknown);
    REQUIRE(answered.completions.size() == 1);
    CHECK(answered.completions[0].ec == Errc::outcome_unknown);
    CHECK(answered.completions[0].receipt.diagnostics.message ==
          "the close deadline passed; last attempt: cancelled after the request was sent");
}

TEST_CASE(
    "send machine: a message cancelled on the wire by the close deadline keeps its last "
    "attempt's error") {
    Rig rig;
    auto& sent = rig.send("unlucky");
    CHECK(rig.answer(sent.calls.at(0), error_reply(503, "ServiceUnavailable", "busy"))
              .completions.empty());
    auto& retry = rig.advance_to_wake();
    const auto call = retry.calls.at(0);
    Machine::Actions out;
    rig.machine->abandon("the close deadline passed", out);
    CHECK(out.cancel_calls == std::vector<std::uint64_t>{call.id});
    auto& cancelled = rig.answer(call, {}, boost::asio::error::operation_aborted);
    REQUIRE(cancelled.completions.size() == 1);
    CHECK(cancelled.completions[0].receipt.diagnostics.message ==
          "the close deadline passed; last attempt: ServiceUnavailable: busy");
    CHECK(cancelled.completions[0].receipt.attempts == 2);
}

TEST_CASE(
    "send machine: a queue named, not addressed, is looked up first; a failed lookup is "
    "retried, then fails what waits") {
    outbox::SqsDestinationConfig config;
    config.queue_name = "orders";
    config.max_message_size = 262144;
    config.linger = 0ms;
    config.retry.max_attempts = 2;
    outbox::detail::DestinationCounters stats;
    Machine machine(config, "", false, stats, 3);
    auto now = Machine::Time{} + 5h;
    Machine::Actions out;
    Message m;
    m.body = "x";
    machine.accept(m, sqs::message_size(m), now, out);
    REQUIRE(out.calls.size() == 1);
    CHECK(std::string(out.calls[0].action) == "GetQueueUrl");
    auto lookup = out.calls[0];
    out = {};
    machine.call_answered(lookup.id, {}, error_reply(500, "InternalError", "try later"), now, out);
    CHECK(out.empty());
    REQUIRE(machine.next_wake());
    now = *machine.next_wake();
    machine.wake(now, out);
    REQUIRE(out.calls.size() == 1);
    lookup = out.calls[0];
    out = {};
    machine.call_answered(lookup.id, {},
                          reply(200, "{\"QueueUrl\":\"http://127.0.0.1:1/000000000000/orders\"}"),
                          now, out);
    CHECK(machine.queue_url() == "http://127.0.0.1:1/000000000000/orders");
    REQUIRE(out.calls.size() == 1);
    CHECK(std::string(out.calls[0].action) == "SendMessage");

    // A second machine whose lookups keep failing: what waits fails with the lookup's error.
    Machine failing(config, "", false, stats, 3);
    out = {};
    failing.accept(m, sqs::message_size(m), now, out);
    for (int i = 0; i < 2; ++i) {
        lookup = out.calls.at(0);
        out = {};
        failing.call_answered(lookup.id, {}, error_reply(500, "InternalError", "down"), now, out);
        if (!out.completions.empty()) break;
        now = *failing.next_wake();
        failing.wake(now, out);
    }
    REQUIRE(out.completions.size() == 1);
    CHECK(out.completions[0].ec == Errc::service_unavailable);
    CHECK(
        out.completions[0].receipt.diagnostics.message.starts_with("looking up the queue failed"));
}

TEST_CASE("send machine: a clock-skew refusal corrects the signing time and resends at once") {
    Rig rig;
    auto& sent = rig.send("late clock");
    auto skewed = error_reply(400, "InvalidSignatureException", "Signature expired: ...");
    skewed.headers.emplace_back("Date", "Mon, 01 Jan 2035 00:00:00 GMT");
    const auto before = rig.machine->signing_time();
    auto& again = rig.answer(sent.calls.at(0), std::move(skewed));
    CHECK(again.completions.empty());
    REQUIRE(again.calls.size() == 1);  // no backoff
    CHECK(rig.machine->signing_time() - before > std::chrono::hours(24 * 365));
}

TEST_CASE("send machine: a message's state starts fresh, whatever the one before it went through") {
    // Entries are reused while messages are in flight: nothing of the last one's attempts or
    // split may reach the next. "keeper" stays on the wire so the machine never goes idle
    // (an idle machine keeps no spare entries).
    Rig rig([](auto& c) { c.linger = 1ms; });
    for (const char* body : {"good", "bad", "keeper"}) rig.send(body);
    auto& out = rig.advance_to_wake();
    REQUIRE(out.calls.size() == 1);
    auto& split =
        rig.answer(out.calls[0], error_reply(400, "InvalidParameterValue", "one entry is invalid"));
    REQUIRE(split.calls.size() == 3);  // each alone now
    const auto good = split.calls[0], bad = split.calls[1], keeper = split.calls[2];
    REQUIRE(rig.answer(good, single_reply(good)).completions.size() == 1);
    auto& refused = rig.answer(bad, error_reply(400, "InvalidParameterValue", "bad body"));
    REQUIRE(refused.completions.size() == 1);
    REQUIRE(refused.completions[0].receipt.attempts == 2);
    CHECK(rig.machine->messages() == 1);

    // Two more take the entries of those two: they go out together (neither was split) at the
    // first try.
    rig.send("next-1");
    rig.send("next-2");
    auto& again = rig.advance_to_wake();
    REQUIRE(again.calls.size() == 1);
    CHECK(bodies_of(again.calls[0]) == std::vector<std::string>{"next-1", "next-2"});
    auto& done = rig.answer(again.calls[0], batch_reply(again.calls[0]));
    REQUIRE(done.completions.size() == 2);
    for (const auto& c : done.completions) {
        CHECK(c.ec == boost::system::error_code());
        CHECK(c.receipt.attempts == 1);
        CHECK(c.message.body.starts_with("next-"));
    }
    CHECK(rig.answer(keeper, single_reply(keeper)).completions.at(0).receipt.attempts == 2);
    CHECK(rig.machine->messages() == 0);
}
