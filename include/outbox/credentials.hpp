// AWS credentials as the signer consumes them. Providers that find them (environment,
// profile files, metadata services) build on this type.
#pragma once

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>

namespace outbox {

struct Credentials {
    std::string access_key_id{};
    std::string secret_access_key{};
    std::string session_token{};  // empty for long-term keys
    // When temporary credentials stop working; empty for keys that do not expire.
    std::optional<std::chrono::system_clock::time_point> expiration{};

    bool has_session_token() const noexcept { return !session_token.empty(); }
    bool empty() const noexcept { return access_key_id.empty() || secret_access_key.empty(); }
};

/// Prints the access key id and whether a token and expiry are set; never the secret
/// or the token, so credentials can be logged safely.
std::ostream& operator<<(std::ostream& os, const Credentials& credentials);

}  // namespace outbox
