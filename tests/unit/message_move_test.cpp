// detail::move_into_empty_message and move_into_empty_receipt: every field arrives, whether
// short (kept in place) or long.
#include "catch.hpp"

#include "core/message_move.hpp"

#include <string>

namespace {

outbox::Message every_field_set(std::size_t length) {
    const auto text = [&](char c) { return std::string(length, c); };
    outbox::Message m;
    m.body = text('b');
    m.attributes.push_back({text('n'), "Number", text('v')});
    m.group_id = text('g');
    m.deduplication_id = text('d');
    m.delay = std::chrono::seconds(7);
    m.target = text('t');
    m.idempotency_key = text('i');
    m.traceparent = text('p');
    m.tracestate = text('s');
    m.aws_trace_header = text('x');
    return m;
}

void check_same(const outbox::Message& a, const outbox::Message& b) {
    CHECK(a.body == b.body);
    REQUIRE(a.attributes.size() == b.attributes.size());
    CHECK(a.attributes[0].name == b.attributes[0].name);
    CHECK(a.attributes[0].data_type == b.attributes[0].data_type);
    CHECK(a.attributes[0].value == b.attributes[0].value);
    CHECK(a.group_id == b.group_id);
    CHECK(a.deduplication_id == b.deduplication_id);
    CHECK(a.delay == b.delay);
    CHECK(a.target == b.target);
    CHECK(a.idempotency_key == b.idempotency_key);
    CHECK(a.traceparent == b.traceparent);
    CHECK(a.tracestate == b.tracestate);
    CHECK(a.aws_trace_header == b.aws_trace_header);
}

}  // namespace

TEST_CASE("move_into_empty_message carries every field, short or long") {
    for (std::size_t length : {std::size_t(3), std::size_t(40)}) {
        CAPTURE(length);
        const outbox::Message original = every_field_set(length);
        outbox::Message from = original;
        outbox::Message to;
        outbox::detail::move_into_empty_message(to, std::move(from));
        check_same(to, original);
    }
}

TEST_CASE("move_into_empty_message leaves empty fields empty") {
    outbox::Message from;
    from.body = "only a body";
    outbox::Message to;
    outbox::detail::move_into_empty_message(to, std::move(from));
    CHECK(to.body == "only a body");
    CHECK(to.attributes.empty());
    CHECK(to.group_id.empty());
    CHECK(to.delay == std::chrono::seconds(0));
    CHECK(to.aws_trace_header.empty());
}

TEST_CASE("move_into_empty_receipt carries every field, short or long") {
    for (std::size_t length : {std::size_t(3), std::size_t(40)}) {
        CAPTURE(length);
        const auto text = [&](char c) { return std::string(length, c); };
        outbox::Receipt original;
        original.message_id = text('m');
        original.sequence_number = text('s');
        original.topic = text('t');
        original.partition = 3;
        original.offset = 77;
        original.staged_url = text('u');
        original.staged_key = text('k');
        original.attempts = 2;
        original.diagnostics.http_status = 503;
        original.diagnostics.code = text('c');
        original.diagnostics.message = text('w');
        original.diagnostics.request_id = text('r');
        original.diagnostics.sender_fault = true;
        original.diagnostics.service_message = text('v');
        outbox::Receipt from = original;
        outbox::Receipt to;
        outbox::detail::move_into_empty_receipt(to, std::move(from));
        CHECK(to.message_id == original.message_id);
        CHECK(to.sequence_number == original.sequence_number);
        CHECK(to.topic == original.topic);
        CHECK(to.partition == 3);
        CHECK(to.offset == 77);
        CHECK(to.staged_url == original.staged_url);
        CHECK(to.staged_key == original.staged_key);
        CHECK(to.attempts == 2);
        CHECK(to.diagnostics.http_status == 503);
        CHECK(to.diagnostics.code == original.diagnostics.code);
        CHECK(to.diagnostics.message == original.diagnostics.message);
        CHECK(to.diagnostics.request_id == original.diagnostics.request_id);
        CHECK(to.diagnostics.sender_fault);
        CHECK(to.diagnostics.service_message == original.diagnostics.service_message);
    }
}
