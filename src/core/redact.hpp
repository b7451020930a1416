// Keeping secrets out of messages: a service error may echo what we sent (AWS's
// SignatureDoesNotMatch text quotes the canonical request, session token included).
// Private to the library.
#pragma once

#include <string>
#include <string_view>

namespace outbox::detail {

/// Replaces every occurrence of `secret` in `text` with "[redacted]". Nothing for an empty
/// secret.
inline void redact(std::string& text, std::string_view secret) {
    if (secret.empty()) return;
    static constexpr std::string_view mark = "[redacted]";
    for (auto at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + mark.size()))
        text.replace(at, secret.size(), mark);
}

}  // namespace outbox::detail
