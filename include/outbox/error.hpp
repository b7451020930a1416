// Error codes of outbox: one category, one enum. Operations report failures as
// boost::system::error_code values of this category.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace outbox {

enum class Errc {
    // Input rejected before any request is made.
    invalid_argument = 1,  // a value that is malformed or out of range (the message says which)
    invalid_timestamp,     // not YYYYMMDD'T'HHMMSS'Z', or not a real date and time
    invalid_expiry,        // pre-signed URL lifetime outside 1..604800 seconds
    invalid_url,           // a URL that does not parse, or lacks scheme or host
    missing_credentials,   // no access key id or secret access key

    // HTTP transport.
    timeout,             // a deadline passed and no attempt may have been delivered: safe to retry
    outcome_unknown,     // the request was sent but no complete reply came back
    response_too_large,  // the response exceeded the configured size limit
    malformed_response,  // the response is not valid HTTP/1.1

    // Credentials.
    credentials_not_found,         // no provider of the chain found credentials
    credentials_expired,           // the only credentials at hand have expired
    credentials_endpoint_error,    // a credentials endpoint answered with an HTTP error
    invalid_credentials_response,  // a credentials endpoint's answer could not be read
    unsupported_profile,           // the profile needs a feature outbox lacks (role_arn, sso, ...)
    unreadable_profile_file,       // a profile file is not a regular file, or over 1 MiB (logged)

    // Messages rejected before any request is made.
    payload_too_large,  // larger than the destination's limit, and no stager takes it
    invalid_message,    // a body, attribute, group id or deduplication id the service would refuse

    // Answers of the service (Diagnostics says what it said).
    throttled,            // the service asked us to slow down: retryable
    service_unavailable,  // HTTP 5xx or an entry failed through no fault of ours: retryable
    service_error,        // the service refused the request or the message: not retryable
    checksum_mismatch,    // the MD5 the service reported differs from what we sent
    // Connections (Kafka).
    authentication_failed,  // the broker refused the credentials (SASL)
    tls_error,              // the TLS handshake failed: an untrusted or mismatched certificate
    topic_not_found,        // the topic does not exist and could not be created
    // Routing.
    no_route,  // the route function named no target, or no destination could be made for it
    // Closing.
    close_timeout,  // the close deadline passed first: what was left failed with operation_aborted
    // The durable outbox's store.
    store_error,  // the store failed (the result's text names the file and the cause)
    store_full,   // the disk is full, or the store holds max_store_bytes and fail_when_full is set
    // Routing's isolation of targets (appended: the values above are kept).
    target_unavailable,  // the target's circuit breaker is open: refused without a request
    target_busy,         // the target holds its most in flight, or is over its rate limit
};

/// The category of outbox::Errc; its name is "outbox".
const boost::system::error_category& error_category() noexcept;

/// The one classifier of failures: true when trying again later may succeed (throttling,
/// 5xx, transport errors, timeouts, replies lost after sending). Destinations retry these
/// themselves; a caller sees one only when attempts or the deadline ran out, or from a
/// RoutingDestination that refused a message for its target's sake (target_unavailable,
/// target_busy), which it does not retry.
bool is_retryable(const boost::system::error_code& ec) noexcept;

inline boost::system::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

}  // namespace outbox

template <>
struct boost::system::is_error_code_enum<outbox::Errc> : std::true_type {};
