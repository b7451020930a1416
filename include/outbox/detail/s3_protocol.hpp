// The pieces of S3 the stager needs: bucket names, object keys, tagging, error replies.
// Not API.
#pragma once

#include <outbox/diagnostics.hpp>
#include <outbox/http_client.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::detail::s3 {

/// 3-63 characters of a-z 0-9 . -, starting and ending with a letter or digit, no "..".
bool is_valid_bucket_name(std::string_view bucket) noexcept;

/// Fills {prefix} {yyyy} {mm} {dd} {hh} {uuid} (UTC); drops leading and doubled '/'.
std::string expand_key_template(std::string_view key_template, std::string_view prefix,
                                std::chrono::system_clock::time_point now, std::string_view uuid);

/// The x-amz-tagging header value: "k1=v1&k2=v2", each part percent-encoded.
std::string tagging_header(const std::vector<std::pair<std::string, std::string>>& tags);

/// Reads an S3 error reply (XML <Error><Code>, <Message>, <RequestId>; headers
/// x-amz-request-id). Returns Errc::throttled (SlowDown, 429, 503), Errc::service_unavailable
/// (other 5xx) or Errc::service_error.
boost::system::error_code parse_error_response(const HttpResponse& response, Diagnostics& out);

}  // namespace outbox::detail::s3
