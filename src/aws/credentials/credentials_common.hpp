// Helpers shared by the credentials providers. Private to the library.
#pragma once

#include <outbox/credentials_provider.hpp>
#include "core/thrown_text.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>

#include <cstdlib>
#include <optional>
#include <string>

namespace outbox::detail {

using CredentialsHandler =
    boost::asio::any_completion_handler<void(boost::system::error_code, Credentials)>;

/// Completes `handler` on its associated executor, never inline. `fallback`, for handlers
/// with none, is the caller's I/O executor, never a provider's internal strand (a handler
/// running there would hold up the provider's other work).
inline void complete_later(const boost::asio::any_io_executor& fallback, CredentialsHandler handler,
                           boost::system::error_code ec, Credentials credentials) {
    boost::asio::post(fallback,
                      boost::asio::append(std::move(handler), ec, std::move(credentials)));
}

/// The value of an environment variable, or nothing when unset or empty.
inline std::optional<std::string> env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
}

}  // namespace outbox::detail
