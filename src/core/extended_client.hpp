// What the Extended Client envelope reserves on every message, staged or not: its readers take
// a message carrying the size attribute for a pointer. Private to the library.
#pragma once

#include <outbox/envelope.hpp>
#include <outbox/message.hpp>

#include <string>

namespace outbox::detail {

/// Empty, or why `m` cannot go under Envelope::extended_client (`what`: "attribute", "header").
inline std::string extended_client_reserved_error(const Message& m, const char* what) {
    for (const auto& a : m.attributes)
        if (a.name == extended_payload_size_attribute || a.name == legacy_payload_size_attribute)
            return "the " + std::string(what) + " " + a.name +
                   " is reserved by the Extended Client envelope (its readers would take the "
                   "body for a pointer)";
    return {};
}

}  // namespace outbox::detail
