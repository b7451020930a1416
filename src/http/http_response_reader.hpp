// Reads an HTTP/1.1 response straight into an HttpResponse, on Beast's parser. Private to the
// library; fuzzed by tests/fuzz/fuzz_http_response.cpp.
#pragma once

#include <outbox/http_client.hpp>

#include <boost/beast/http/basic_parser.hpp>

#include <cstddef>
#include <cstdint>

namespace outbox::detail {

/// Beast's response parser with HttpResponse as the message: the status, the fields (in
/// order and as spelt, repeats kept) and the body (chunked or not), without the copy that
/// Beast's own message and fields would make first. Limits, keep-alive and need_eof are
/// basic_parser's.
class HttpResponseReader final : public boost::beast::http::basic_parser<false> {
  public:
    explicit HttpResponseReader(HttpResponse& out) : out_(out) {}

  private:
    using string_view = boost::beast::string_view;
    using error_code = boost::system::error_code;

    void on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                         error_code& ec) override;
    void on_response_impl(int code, string_view reason, int version, error_code& ec) override;
    void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                       error_code& ec) override;
    void on_header_impl(error_code& ec) override;
    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                           error_code& ec) override;
    std::size_t on_body_impl(string_view body, error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
    std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
    void on_finish_impl(error_code& ec) override;

    HttpResponse& out_;
};

}  // namespace outbox::detail
