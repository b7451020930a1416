// The SQS JSON protocol pieces without a network: queue URLs, validation, request bodies,
// replies, error classification, HTTP dates.
#include "catch.hpp"

#include <outbox/error.hpp>
#include "aws/aws_host.hpp"
#include "aws/sqs/sqs_protocol.hpp"
#include "http/http_date.hpp"

#include <simdjson.h>

namespace sqs = outbox::detail::sqs;

namespace {
std::string hex(const sqs::Md5Hex& h) {
    return std::string(h.data(), h.size());
}
outbox::Message body(std::string b) {
    outbox::Message m;
    m.body = std::move(b);
    return m;
}
}  // namespace

TEST_CASE("queue URLs: region, name and FIFO from the URL; malformed ones refused") {
    sqs::QueueAddress q;
    std::string why;
    REQUIRE_FALSE(sqs::parse_queue_url(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo", q, why));
    CHECK(q.region == "eu-west-1");
    CHECK(q.name == "orders.fifo");
    CHECK(q.fifo);
    CHECK(q.origin.tls);
    CHECK(q.origin.host == "sqs.eu-west-1.amazonaws.com");
    REQUIRE_FALSE(sqs::parse_queue_url("http://127.0.0.1:4566/000000000000/local", q, why));
    CHECK(q.region.empty());
    CHECK(q.origin.port == 4566);
    CHECK_FALSE(q.fifo);
    CHECK(sqs::region_from_host("us-east-2.queue.amazonaws.com") == "us-east-2");
    CHECK(sqs::region_from_host("sqs.cn-north-1.amazonaws.com.cn") == "cn-north-1");
    CHECK(sqs::region_from_host("sqs-fips.us-gov-west-1.amazonaws.com") == "us-gov-west-1");
    CHECK(sqs::region_from_host("example.com").empty());
    CHECK(sqs::region_from_host("sqs.amazonaws.com").empty());
    // The same rule names the region STS requests are signed for (AssumeRole).
    CHECK(outbox::detail::region_in_aws_host("sts.eu-central-1.amazonaws.com", "sts") ==
          "eu-central-1");
    CHECK(outbox::detail::region_in_aws_host("sts-fips.us-east-2.amazonaws.com", "sts") ==
          "us-east-2");
    CHECK(outbox::detail::region_in_aws_host("sts.amazonaws.com", "sts").empty());  // global
    CHECK(outbox::detail::region_in_aws_host("sqs.eu-west-1.amazonaws.com", "sts").empty());
    CHECK(outbox::detail::region_in_aws_host("vpce-1.sts.eu-west-1.vpce.amazonaws.com", "sts")
              .empty());
    for (const char* bad : {"", "sqs.eu-west-1.amazonaws.com/1/q", "ftp://h/1/q", "https://h/1",
                            "https://h/1/q/x", "https://h//q", "https://h/1/q?x=1"}) {
        INFO(bad);
        CHECK(sqs::parse_queue_url(bad, q, why) == outbox::Errc::invalid_url);
        CHECK_FALSE(why.empty());
    }
}

TEST_CASE("SQS characters: valid UTF-8 within the allowed ranges") {
    std::size_t at = 0;
    CHECK(sqs::is_valid_sqs_text("plain\ttext\r\n", at));
    CHECK(sqs::is_valid_sqs_text("\xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd", at));  // € 😀 U+FFFD
    CHECK_FALSE(sqs::is_valid_sqs_text("ab\x01", at));
    CHECK(at == 2);
    CHECK_FALSE(sqs::is_valid_sqs_text("ab\x7f\xc3", at));  // truncated sequence
    CHECK(at == 3);
    CHECK_FALSE(sqs::is_valid_sqs_text("\xed\xa0\x80", at));   // a surrogate
    CHECK_FALSE(sqs::is_valid_sqs_text("x\xef\xbf\xbe", at));  // U+FFFE
    CHECK(at == 1);
    CHECK_FALSE(sqs::is_valid_sqs_text("\xc0\xaf", at));  // overlong
    CHECK_FALSE(sqs::is_valid_sqs_text(std::string_view("a\0b", 3), at));

    // A control character is found at any offset of a run of 70 bytes (64 + 6) or 76 (64 + 8
    // + 4: the sixteen-, eight- and one-byte paths each find one); tab, LF and CR are allowed
    // wherever they are.
    for (const std::size_t length : {std::size_t(70), std::size_t(76)})
        for (std::size_t offset = 0; offset < length; ++offset) {
            const std::string plain(length, 'x');
            CAPTURE(offset);
            std::string text = plain;
            text[offset] = '\x01';
            CHECK_FALSE(sqs::is_valid_sqs_text(text, at));
            CHECK(at == offset);
            text[offset] = '\x1f';
            CHECK_FALSE(sqs::is_valid_sqs_text(text, at));
            CHECK(at == offset);
            for (const char allowed : {'\t', '\n', '\r'}) {
                text[offset] = allowed;
                CHECK(sqs::is_valid_sqs_text(text, at));
            }
            if (offset + 3 < text.size()) {  // found past an allowed one in the same block
                text[offset + 3] = '\x02';
                CHECK_FALSE(sqs::is_valid_sqs_text(text, at));
                CHECK(at == offset + 3);
            }
        }
}

TEST_CASE("message validation names what is wrong") {
    std::string why;
    CHECK_FALSE(sqs::validate_message(body("ok"), false, why));
    auto m = body("ok");
    CHECK(sqs::validate_message(m, true, why) == outbox::Errc::invalid_message);
    CHECK(why.find("group id") != std::string::npos);
    m.group_id = "g1";
    CHECK_FALSE(sqs::validate_message(m, true, why));
    m.delay = std::chrono::seconds(5);
    CHECK(sqs::validate_message(m, true, why) == outbox::Errc::invalid_message);
    m.delay = std::chrono::seconds(901);
    CHECK(sqs::validate_message(m, false, why) == outbox::Errc::invalid_message);
    m = body("ok");
    m.group_id = std::string(129, 'g');
    CHECK(sqs::validate_message(m, false, why) == outbox::Errc::invalid_message);
    m = body("ok");
    m.attributes = {
        {"a.b-c_D9", "Number.int", "1e10"}, {"s", "String", "x"}, {"b", "Binary", "\x01"}};
    CHECK_FALSE(sqs::validate_message(m, false, why));
    for (auto [name, type, value] :
         std::initializer_list<std::tuple<const char*, const char*, const char*>>{
             {".a", "String", "x"},
             {"a..b", "String", "x"},
             {"amazon.x", "String", "x"},
             {"sp ace", "String", "x"},
             {"a", "Str", "x"},
             {"a", "String.", "x"},
             {"a", "Number", "1.2.3"},
             {"a", "String", ""},
             {"a", "String", "\x02"}}) {
        m.attributes = {{name, type, value}};
        INFO(name << " " << type << " " << value);
        CHECK(sqs::validate_message(m, false, why) == outbox::Errc::invalid_message);
    }
    m.attributes = {{"x", "String", "1"}, {"x", "String", "2"}};
    CHECK(sqs::validate_message(m, false, why) == outbox::Errc::invalid_message);
    CHECK(why.find("twice") != std::string::npos);
}

TEST_CASE("sizes and digests") {
    auto m = body("hello");
    m.attributes = {{"ab", "String", "xyz"}};
    CHECK(sqs::message_size(m) == 5 + 2 + 6 + 3);
    CHECK(hex(sqs::md5_of_body("hello")) == "5d41402abc4b2a76b9719d911017c592");
    // The attribute digest is MD5 over length-prefixed name, type, transport byte, value,
    // in name order: the same bytes laid out by hand.
    auto lp = [](std::string_view v) {
        const auto n = static_cast<unsigned>(v.size());
        std::string out{static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                        static_cast<char>(n >> 8), static_cast<char>(n)};
        return out + std::string(v);
    };
    const std::string laid_out = lp("a") + lp("String") + '\x01' + lp("1") + lp("b") +
                                 lp("Binary") + '\x02' + lp(std::string("\xff\x00", 2));
    CHECK(hex(sqs::md5_of_body(laid_out)) ==
          "09a79954bc1744070e3833a490c4dba7");  // Python's hashlib
    CHECK(hex(sqs::md5_of_attributes({{"b", "Binary", std::string("\xff\x00", 2)},
                                      {"a", "String", "1"}})) == hex(sqs::md5_of_body(laid_out)));
}

TEST_CASE("request bodies are valid JSON with the fields SQS expects") {
    outbox::Message m = body("line\n\"quoted\"");
    m.group_id = "g";
    m.deduplication_id = "d";
    m.attributes = {{"bin", "Binary", "hi!"}, {"n", "Number", "7"}};
    std::string out;
    sqs::write_batch_begin(out, "https://q/1/n.fifo");
    sqs::write_batch_entry(out, 0, m, true);
    sqs::write_batch_entry(out, 1, body("second"), false);
    sqs::write_batch_end(out);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(out);
    CHECK(std::string_view(doc["QueueUrl"]) == "https://q/1/n.fifo");
    CHECK(std::string_view(doc["Entries"].at(0)["MessageBody"]) == "line\n\"quoted\"");
    CHECK(std::string_view(doc["Entries"].at(0)["Id"]) == "0");
    CHECK(std::string_view(doc["Entries"].at(0)["MessageGroupId"]) == "g");
    CHECK(std::string_view(doc["Entries"].at(0)["MessageAttributes"]["bin"]["BinaryValue"]) ==
          "aGkh");
    CHECK(std::string_view(doc["Entries"].at(0)["MessageAttributes"]["n"]["StringValue"]) == "7");
    CHECK(std::string_view(doc["Entries"].at(1)["Id"]) == "1");
}

TEST_CASE("replies: a Successful entry's fields in any order, the first of a repeated name") {
    sqs::SendResult r;
    REQUIRE_FALSE(sqs::parse_send_message_batch_result(
        R"({"Successful":[
              {"SequenceNumber":"s7","MD5OfMessageAttributes":"ma","MD5OfMessageBody":"mb",
               "MessageId":"m3","Id":"3","Extra":{"nested":[1,2]}},
              {"Id":"4","MessageId":"first","MessageId":"second","MD5OfMessageBody":7,
               "MD5OfMessageBody":"late","SequenceNumber":null}]})",
        r));
    REQUIRE(r.successful.size() == 2);
    CHECK(r.successful[0].id == 3);
    CHECK(r.successful[0].message_id == "m3");
    CHECK(r.successful[0].md5_of_body == "mb");
    CHECK(r.successful[0].md5_of_attributes == "ma");
    CHECK(r.successful[0].sequence_number == "s7");
    CHECK(r.successful[1].id == 4);
    CHECK(r.successful[1].message_id == "first");
    CHECK(r.successful[1].md5_of_body.empty());  // the first is not text: none to check
    CHECK(r.successful[1].md5_of_attributes.empty());
    CHECK(r.successful[1].sequence_number.empty());

    // A MessageId or Id that is missing, not text, or not a number, is a malformed reply.
    for (const char* reply :
         {R"({"Successful":[{"Id":"1"}]})", R"({"Successful":[{"Id":"1","MessageId":5}]})",
          R"({"Successful":[{"Id":"1","MessageId":null,"MessageId":"m"}]})",
          R"({"Successful":[{"MessageId":"m"}]})", R"({"Successful":[{"Id":1,"MessageId":"m"}]})",
          R"({"Successful":[{"Id":"1x","MessageId":"m"}]})",
          R"({"Successful":[{"Id":"x","Id":"1","MessageId":"m"}]})"}) {
        sqs::SendResult bad;
        CHECK(sqs::parse_send_message_batch_result(reply, bad) == outbox::Errc::malformed_response);
    }
    // SendMessage's reply has no Id.
    sqs::SendResult one;
    REQUIRE_FALSE(
        sqs::parse_send_message_result(R"({"MD5OfMessageBody":"b","MessageId":"m9"})", one));
    REQUIRE(one.successful.size() == 1);
    CHECK(one.successful[0].message_id == "m9");
    CHECK(one.successful[0].md5_of_body == "b");
}

TEST_CASE("replies: batch results, and errors classified") {
    sqs::SendResult r;
    REQUIRE_FALSE(sqs::parse_send_message_batch_result(
        R"({"Successful":[{"Id":"1","MessageId":"m1","MD5OfMessageBody":"abc"}],
            "Failed":[{"Id":"0","SenderFault":true,"Code":"InvalidParameterValue","Message":"bad"}]})",
        r));
    REQUIRE(r.successful.size() == 1);
    CHECK(r.successful[0].id == 1);
    CHECK(r.successful[0].message_id == "m1");
    REQUIRE(r.failed.size() == 1);
    CHECK(r.failed[0].sender_fault);
    CHECK(r.failed[0].code == "InvalidParameterValue");
    sqs::SendResult bad;
    CHECK(sqs::parse_send_message_batch_result("{\"Successful\":[{\"Id\":\"x\"}]}", bad) ==
          outbox::Errc::malformed_response);
    CHECK(sqs::parse_send_message_result("<html>", bad) == outbox::Errc::malformed_response);

    outbox::HttpResponse res;
    res.status = 400;
    res.headers = {{"x-amzn-RequestId", "req-1"}};
    res.body = R"({"__type":"com.amazonaws.sqs#ThrottlingException","message":"slow down"})";
    outbox::Diagnostics d;
    CHECK(sqs::parse_error_response(res, d) == outbox::Errc::throttled);
    CHECK(d.code == "ThrottlingException");
    CHECK(d.message == "slow down");
    CHECK(d.service_message == "slow down");
    CHECK(d.request_id == "req-1");
    res.status = 503;
    res.body = "<html>bad gateway</html>";
    d = {};
    CHECK(sqs::parse_error_response(res, d) == outbox::Errc::service_unavailable);
    CHECK(d.code == "HTTP 503");
    CHECK(d.service_message.empty());  // an HTML page from a proxy is not the service's word
    res.status = 400;
    res.headers = {{"x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender"}};
    res.body.clear();
    d = {};
    CHECK(sqs::parse_error_response(res, d) == outbox::Errc::service_error);
    CHECK(d.code == "AWS.SimpleQueueService.NonExistentQueue");
    d.code = "InvalidSignatureException";
    d.message = "Signature expired: 20261122T050000Z is now earlier than 20261122T051000Z";
    CHECK(sqs::is_clock_skew_error(d));
    d.message = "The request signature we calculated does not match";
    CHECK_FALSE(sqs::is_clock_skew_error(d));

    std::size_t size = 0;
    bool content = false;
    REQUIRE_FALSE(sqs::parse_get_queue_attributes_result(
        R"({"Attributes":{"MaximumMessageSize":"1048576","ContentBasedDeduplication":"true"}})",
        size, content));
    CHECK(size == 1048576);
    CHECK(content);
}

TEST_CASE("retryable errors: the one classifier") {
    using outbox::Errc;
    for (auto e :
         {Errc::throttled, Errc::service_unavailable, Errc::timeout, Errc::outcome_unknown})
        CHECK(outbox::is_retryable(e));
    for (auto e : {Errc::service_error, Errc::invalid_message, Errc::payload_too_large,
                   Errc::checksum_mismatch})
        CHECK_FALSE(outbox::is_retryable(e));
    CHECK(outbox::is_retryable(boost::asio::error::connection_refused));
    CHECK(outbox::is_retryable(boost::asio::error::connection_reset));
    CHECK_FALSE(outbox::is_retryable(boost::asio::error::operation_aborted));
    CHECK_FALSE(outbox::is_retryable({}));
}

TEST_CASE("HTTP dates and Retry-After") {
    using namespace std::chrono;
    const auto t = outbox::detail::parse_http_date("Sun, 22 Nov 2026 05:10:07 GMT");
    REQUIRE(t);
    CHECK(*t == sys_days(2026y / November / 22) + hours(5) + minutes(10) + seconds(7));
    CHECK_FALSE(outbox::detail::parse_http_date("Sun, 31 Feb 2026 05:10:07 GMT"));
    CHECK_FALSE(outbox::detail::parse_http_date("yesterday"));
    CHECK(outbox::detail::parse_retry_after("3", system_clock::now()) == milliseconds(3000));
    CHECK(outbox::detail::parse_retry_after("Sun, 22 Nov 2026 05:10:17 GMT", *t) ==
          milliseconds(10000));
    CHECK_FALSE(outbox::detail::parse_retry_after("soon", system_clock::now()));
    // Found by fuzz_sqs_responses once the library was instrumented: seconds * 1000 overflowed.
    CHECK(outbox::detail::parse_retry_after("3035555355555555555", system_clock::now()) ==
          milliseconds::max());
    CHECK(outbox::detail::parse_retry_after("9223372036854775", system_clock::now()) ==
          milliseconds(9223372036854775000));
    // Years a 64-bit count of nanoseconds cannot hold are not taken for dates.
    CHECK_FALSE(outbox::detail::parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"));
    CHECK_FALSE(outbox::detail::parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", *t));
    CHECK(outbox::detail::parse_http_date("Tue, 31 Dec 2199 23:59:59 GMT"));
    CHECK_FALSE(outbox::detail::parse_http_date("Mon, 01 Jan 1900 00:00:00 GMT"));
    CHECK_FALSE(outbox::detail::parse_http_date("Sun, -1 Nov 2026 05:10:07 GMT"));
}
