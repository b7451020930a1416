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
};

/// The category of outbox::Errc; its name is "outbox".
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

}  // namespace outbox

template <>
struct boost::system::is_error_code_enum<outbox::Errc> : std::true_type {};
