// Wording shared by the parts of sqs::SendMachine. Private to the library.
#pragma once

#include <outbox/diagnostics.hpp>
#include <outbox/http_client.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <string>

namespace outbox::detail::sqs {

/// "Code: message" of what a service or transport said, for messages that add context.
inline std::string describe(const Diagnostics& d) {
    if (d.code.empty() || d.message.find(d.code) != std::string::npos) return d.message;
    return d.message.empty() ? d.code : d.code + ": " + d.message;
}

/// `why`, then what the last attempt met, when there was one.
inline std::string with_last_attempt(std::string why, const Diagnostics& last) {
    if (!last.empty()) why += "; last attempt: " + describe(last);
    return why;
}

inline std::string seconds_text(std::chrono::milliseconds ms) {
    return ms.count() % 1000 == 0 ? std::to_string(ms.count() / 1000) + " s"
                                  : std::to_string(ms.count()) + " ms";
}

/// What a failed call says: the transport's account, or the error's own words.
inline Diagnostics transport_diagnostics(boost::system::error_code ec, const HttpResponse& res) {
    Diagnostics d;
    d.message = res.failure.empty() ? ec.message() : res.failure;
    return d;
}

}  // namespace outbox::detail::sqs
