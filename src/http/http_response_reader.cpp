#include "http/http_response_reader.hpp"

#include <boost/beast/http/error.hpp>

#include <string>

namespace outbox::detail {

void HttpResponseReader::on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                                         error_code& ec) {
    ec = boost::beast::http::error::bad_version;  // a response parser never sees a request line
}

void HttpResponseReader::on_response_impl(int code, string_view, int, error_code& ec) {
    // Beast takes any three digits; below 100 is no HTTP status (and 0 means "no reply" to us).
    if (code < 100) {
        ec = boost::beast::http::error::bad_status;
        return;
    }
    out_.status = static_cast<unsigned>(code);
    // Room for a typical reply's fields at once: grown from empty, five fields took four
    // allocations and moved the earlier ones each time.
    out_.headers.reserve(8);
}

void HttpResponseReader::on_field_impl(boost::beast::http::field, string_view name,
                                       string_view value, error_code&) {
    out_.headers.emplace_back(std::string(name), std::string(value));
}

void HttpResponseReader::on_header_impl(error_code&) {}

void HttpResponseReader::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                           error_code&) {
    // basic_parser has already held the length against body_limit.
    if (content_length) out_.body.reserve(static_cast<std::size_t>(*content_length));
}

std::size_t HttpResponseReader::on_body_impl(string_view body, error_code&) {
    out_.body.append(body.data(), body.size());
    return body.size();
}

void HttpResponseReader::on_chunk_header_impl(std::uint64_t, string_view, error_code&) {}

std::size_t HttpResponseReader::on_chunk_body_impl(std::uint64_t, string_view body, error_code&) {
    out_.body.append(body.data(), body.size());
    return body.size();
}

void HttpResponseReader::on_finish_impl(error_code&) {}

}  // namespace outbox::detail
