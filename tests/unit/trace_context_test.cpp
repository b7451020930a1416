// Trace context on a Message: what is accepted, what is refused and why, and the moves into
// attributes that the destinations and the durable outbox make.
#include "catch.hpp"

#include "core/trace_context.hpp"

using outbox::Message;
using outbox::detail::trace_context_error;

namespace {

const std::string valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Message with_traceparent(std::string t) {
    Message m;
    m.traceparent = std::move(t);
    return m;
}

}  // namespace

TEST_CASE("traceparent: version 00 as the W3C specifies it, and later versions' extra fields",
          "[trace]") {
    CHECK(trace_context_error(Message{}).empty());
    CHECK(trace_context_error(with_traceparent(valid)).empty());
    CHECK(trace_context_error(with_traceparent("01-" + valid.substr(3) + "-later")).empty());
    for (const std::string& bad : {
             std::string("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),  // upper
             std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),   // short
             valid + "-extra",                     // 00 has no more
             std::string("ff") + valid.substr(2),  // version ff
             std::string("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
             std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
             std::string("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
             std::string("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"),
         }) {
        INFO(bad);
        const std::string why = trace_context_error(with_traceparent(bad));
        CHECK_FALSE(why.empty());
        CHECK(why.find("traceparent") != std::string::npos);
    }
}

TEST_CASE("tracestate needs a traceparent; both are printable; the X-Ray header too", "[trace]") {
    Message m;
    m.tracestate = "congo=t61rcWkgMzE";
    CHECK(trace_context_error(m) == "tracestate without traceparent");
    m.traceparent = valid;
    CHECK(trace_context_error(m).empty());
    m.tracestate = std::string(513, 'a');
    CHECK_FALSE(trace_context_error(m).empty());
    m.tracestate = "a=\n";
    CHECK_FALSE(trace_context_error(m).empty());
    m.tracestate.clear();
    m.aws_trace_header =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    CHECK(trace_context_error(m).empty());
    m.aws_trace_header += '\x01';
    CHECK(trace_context_error(m).find("aws_trace_header") != std::string::npos);
}

TEST_CASE("into attributes: after the message's own, once, and a clash refused", "[trace]") {
    Message m = with_traceparent(valid);
    m.tracestate = "congo=t61rcWkgMzE";
    m.attributes.push_back({"tenant", "String", "t1"});
    std::string why;
    REQUIRE(outbox::detail::move_trace_context_into_attributes(m, why));
    REQUIRE(m.attributes.size() == 3);
    CHECK(m.attributes[1].name == "traceparent");
    CHECK(m.attributes[1].data_type == "String");
    CHECK(m.attributes[1].value == valid);
    CHECK(m.attributes[2].name == "tracestate");
    CHECK(m.traceparent.empty());
    CHECK(m.tracestate.empty());

    Message twice = with_traceparent(valid);
    twice.attributes.push_back({"traceparent", "String", valid});
    CHECK_FALSE(outbox::detail::move_trace_context_into_attributes(twice, why));
    CHECK(why.find("give it once") != std::string::npos);
}

TEST_CASE("the outbox keeps the X-Ray header as a typed attribute and the relay puts it back",
          "[trace]") {
    Message m;
    m.aws_trace_header = "Root=1-5759e988-bd862e3fe1be46a994272793";
    m.attributes.push_back({"AWSTraceHeader", "String", "the user's own, left alone"});
    outbox::detail::store_aws_trace_header(m);
    CHECK(m.aws_trace_header.empty());
    REQUIRE(m.attributes.size() == 2);
    CHECK(m.attributes[1].data_type == outbox::detail::stored_aws_trace_header_type);
    outbox::detail::restore_aws_trace_header(m);
    CHECK(m.aws_trace_header == "Root=1-5759e988-bd862e3fe1be46a994272793");
    REQUIRE(m.attributes.size() == 1);
    CHECK(m.attributes[0].value == "the user's own, left alone");
    outbox::detail::restore_aws_trace_header(m);  // nothing stored: nothing changes
    CHECK(m.attributes.size() == 1);
}
