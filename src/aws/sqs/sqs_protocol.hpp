// The SQS JSON protocol: queue URLs, request bodies, responses, the MD5 digests SQS returns,
// and the checks SQS would otherwise make on the server. Not API.
#pragma once

#include <outbox/diagnostics.hpp>
#include <outbox/http_client.hpp>
#include <outbox/message.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/system/error_code.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::detail::sqs {

inline constexpr std::size_t default_max_message_size = 256 * 1024;
inline constexpr std::size_t largest_max_message_size = sqs_largest_max_message_size;
inline constexpr std::size_t max_attributes = 10;
inline constexpr std::size_t max_batch_entries = 10;

struct QueueAddress {
    HttpOrigin origin{};
    std::string url{};     // as given, used as QueueUrl in requests
    std::string region{};  // from an AWS host name, else empty
    std::string name{};    // the last path segment
    bool fifo = false;     // the name ends in ".fifo"
};

/// Parses "scheme://host[:port]/ACCOUNT/NAME". Errors: Errc::invalid_url, with `why` set.
boost::system::error_code parse_queue_url(std::string_view url, QueueAddress& out,
                                          std::string& why);

/// The region in an SQS host name: sqs.REGION.amazonaws.com[.cn], REGION.queue.amazonaws.com,
/// sqs-fips.REGION.amazonaws.com, sqs.REGION.api.aws. Empty when the host is none of these.
std::string region_from_host(std::string_view host);

/// True when every byte sequence is valid UTF-8 and every character is one SQS accepts:
/// #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF. Otherwise `bad_offset` is the
/// byte offset of the first offending sequence.
bool is_valid_sqs_text(std::string_view text, std::size_t& bad_offset) noexcept;

/// What SQS counts against MaximumMessageSize: the body plus each attribute's name, type
/// and value.
std::size_t message_size(const Message& message) noexcept;

/// Checks a message against SQS's rules before any request. Errc::invalid_message with
/// `why` saying what is wrong.
/// `check_body` false skips the body (bound for S3, where any bytes are fine).
boost::system::error_code validate_message(const Message& message, bool fifo_queue,
                                           std::string& why, bool check_body = true);

/// 32 lowercase hex digits.
using Md5Hex = std::array<char, 32>;
Md5Hex md5_of_body(std::string_view body) noexcept;
/// out[i] = md5_of_body(bodies[i]), several at once (a batch's bodies in SIMD lanes).
void md5_of_bodies(std::span<const std::string_view> bodies, std::span<Md5Hex> out) noexcept;
/// The digest SQS computes over message attributes (sorted by name; each name, type and
/// value length-prefixed, with a transport byte 1 for String/Number and 2 for Binary).
Md5Hex md5_of_attributes(const std::vector<MessageAttribute>& attributes);

/// Request bodies. `id` is the batch entry id.
void write_send_message(std::string& out, std::string_view queue_url, const Message& message);
void write_batch_begin(std::string& out, std::string_view queue_url);
void write_batch_entry(std::string& out, std::size_t id, const Message& message, bool first);
void write_batch_end(std::string& out);
void write_get_queue_url(std::string& out, std::string_view queue_name);
void write_get_queue_attributes(std::string& out, std::string_view queue_url);

struct SentEntry {
    std::size_t id = 0;  // the batch entry id (0 for SendMessage)
    std::string message_id{};
    // Views into the parser's buffer: valid until the next parse on this thread.
    std::string_view md5_of_body{};
    std::string_view md5_of_attributes{};
    std::string sequence_number{};
};
struct FailedEntry {
    std::size_t id = 0;
    bool sender_fault = false;
    std::string code{};
    std::string message{};
};
struct SendResult {
    std::vector<SentEntry> successful{};
    std::vector<FailedEntry> failed{};
};

/// Reads a 200 reply of SendMessage (one successful entry with id 0) or SendMessageBatch.
/// Errors: Errc::malformed_response.
boost::system::error_code parse_send_message_result(std::string_view json, SendResult& out);
boost::system::error_code parse_send_message_batch_result(std::string_view json, SendResult& out);
boost::system::error_code parse_get_queue_url_result(std::string_view json, std::string& queue_url);
/// MaximumMessageSize (0 when absent) and ContentBasedDeduplication.
boost::system::error_code parse_get_queue_attributes_result(std::string_view json,
                                                            std::size_t& max_message_size,
                                                            bool& content_based_deduplication);

/// Reads an error reply: the code from "__type" (after '#') or x-amzn-query-error, the
/// message, the request id. Returns the error to report: Errc::throttled, Errc::service_unavailable
/// or Errc::service_error.
boost::system::error_code parse_error_response(const HttpResponse& response, Diagnostics& out);

/// Classifies a service error code (for batch entries and error replies).
bool is_throttling_code(std::string_view code) noexcept;
/// The queue does not exist (worth a few retries: a queue just created may not be visible).
bool is_missing_queue_error(const Diagnostics& diagnostics) noexcept;
/// An error that refuses a whole batch for one bad entry: sending each alone finds it.
bool is_batch_refusal_of_one_entry(std::string_view code) noexcept;
bool is_clock_skew_error(const Diagnostics& diagnostics) noexcept;

}  // namespace outbox::detail::sqs
