// Reading the answers of credentials endpoints. Not API.
#pragma once

#include <outbox/credentials.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <string_view>

namespace outbox::detail {

/// ISO 8601 in UTC as AWS writes it: 2026-11-22T12:34:56Z, with optional fractional
/// seconds and a Z or +hh:mm / -hh:mm offset.
bool parse_iso8601(std::string_view text, std::chrono::system_clock::time_point& out);

/// The container and instance metadata answer:
/// {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", ["Code": "Success"]}.
/// Errors: Errc::invalid_credentials_response.
boost::system::error_code parse_credentials_json(std::string_view json, Credentials& out);

/// STS AssumeRoleWithWebIdentity's XML answer. An <Error> answer gives
/// Errc::credentials_endpoint_error with `error_message` set to "Code: Message".
boost::system::error_code parse_sts_credentials_xml(std::string_view xml, Credentials& out,
                                                    std::string& error_message);

}  // namespace outbox::detail
