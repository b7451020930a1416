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

/// Where a bucket's objects are: the origin requests go to, and the path before the encoded
/// key ("/" virtual-hosted, "/BUCKET/" path-style, "/ENDPOINT-PATH/BUCKET/" on an endpoint).
struct BucketAddress {
    HttpOrigin origin{};
    std::string path_prefix{};
};

/// With an endpoint: path-style on it. Without: virtual-hosted on AWS, or path-style when
/// asked or when the bucket has dots (the wildcard certificate would not match).
/// Errors: Errc::invalid_url for an endpoint that is not a plain http(s) URL.
boost::system::error_code bucket_address(std::string_view bucket, std::string_view region,
                                         std::string_view endpoint, bool path_style,
                                         BucketAddress& out);

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
