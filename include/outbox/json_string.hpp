// JSON string and number literals, appended to a std::string: for message bodies built by
// hand, and for outbox's own requests (small and fixed in shape, where a general-purpose
// serializer would cost more than the rest of the request).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace outbox {

/// Appends `text` as a JSON string literal (with the quotes). Control characters, '"' and
/// '\\' are escaped; each byte that is not part of valid UTF-8 becomes U+FFFD.
/// Returns false when such a replacement was made.
bool append_json_string(std::string& out, std::string_view text);

/// Appends a signed integer in JSON form.
void append_json_number(std::string& out, std::int64_t value);

}  // namespace outbox
