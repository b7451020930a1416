// Fuzz target: everything that reads an SQS reply (results, errors, attributes, dates).
#include "aws/sqs/sqs_protocol.hpp"
#include "http/http_date.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace sqs = outbox::detail::sqs;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    sqs::SendResult batch;
    if (!sqs::parse_send_message_batch_result(text, batch)) {
        for (const auto& e : batch.successful)
            if (e.message_id.empty()) std::abort();  // a success always names its message
    }
    sqs::SendResult single;
    (void)sqs::parse_send_message_result(text, single);
    std::string url;
    (void)sqs::parse_get_queue_url_result(text, url);
    std::size_t max_size = 0;
    bool content = false;
    (void)sqs::parse_get_queue_attributes_result(text, max_size, content);

    outbox::HttpResponse res;
    res.status = size > 0 ? 400u + data[0] % 200u : 500u;
    res.body = std::string(text);
    res.headers = {{"x-amzn-query-error", std::string(text.substr(0, 40))}};
    outbox::Diagnostics d;
    const auto ec = sqs::parse_error_response(res, d);
    if (!ec || d.code.empty()) std::abort();  // an error reply is always some error, with a code
    (void)sqs::is_clock_skew_error(d);

    (void)outbox::detail::parse_http_date(text);
    (void)outbox::detail::parse_retry_after(text, std::chrono::system_clock::time_point{});
    std::size_t at = 0;
    (void)sqs::is_valid_sqs_text(text, at);
    if (!sqs::is_valid_sqs_text(text, at) && at > size) std::abort();
    return 0;
}
