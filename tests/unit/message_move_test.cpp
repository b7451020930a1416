// detail::move_into_empty_message: every field arrives, whether short (kept in place) or long.
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
