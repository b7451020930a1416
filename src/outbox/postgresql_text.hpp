// Text the PostgreSQL store writes and reads: message attributes as a JSON object in SQS's own
// shape, array literals, and a connection string with its password hidden. Free of libpq so
// the parser is fuzzed with the core (tests/fuzz/fuzz_attributes_json.cpp). Not API.
#pragma once

#include <outbox/message.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace outbox::detail {

/// {"name": {"DataType": "String", "StringValue": "v"}, "bin": {"DataType": "Binary",
/// "BinaryValue": "base64"}}; nothing at all when there are no attributes.
void append_attributes_json(const std::vector<MessageAttribute>& attributes, std::string& out);

/// Reads what append_attributes_json writes (or an application wrote by hand through
/// outbox.enqueue). False, with `why` naming the attribute and the fault, for anything else.
bool parse_attributes_json(std::string_view json, std::vector<MessageAttribute>& out,
                           std::string& why);

/// Appends `text` as one element of a PostgreSQL array literal: quoted, '"' and '\\'
/// escaped, NUL bytes dropped and bytes that are not UTF-8 replaced (a text column takes
/// neither).
void append_array_text(std::string& out, std::string_view text);

/// Why the PostgreSQL store cannot hold this event, empty when it can: a NUL byte or bytes
/// that are not UTF-8 in the target, group id, deduplication id or an attribute's name, type
/// or (String, Number) value; a delay outside 0 to 900 seconds.
std::string postgresql_refusal(const std::string& target, const Message& message);

/// The connection string or URI with any password replaced by "***", for messages.
std::string redact_connection_string(std::string_view conninfo);

/// What is wrong with a URI whose user name or password holds an '@' or '/' not
/// percent-encoded, empty when nothing is. libpq would split it there, take part of the
/// password for the host or port, and quote that part in its error.
std::string uri_user_part_problem(std::string_view uri);

/// The URI with everything between "scheme://" and its last '@' replaced by "***": for a URI
/// whose user part is malformed, where the password's extent is not known.
std::string redact_user_part_loosely(std::string_view uri);

/// The passwords a connection string or URI holds (as written, and percent-decoded), of three
/// bytes or more: what to hide in libpq's messages, which may quote them.
std::vector<std::string> connection_secrets(std::string_view conninfo);

/// `text` with every occurrence of every secret replaced by "***". Occurrences found in the
/// text as given, and overlapping ones replaced as one, so no part of any survives.
std::string scrub_secrets(std::string text, const std::vector<std::string>& secrets);

}  // namespace outbox::detail
