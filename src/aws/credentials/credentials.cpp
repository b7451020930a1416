#include <outbox/credentials.hpp>

#include <ostream>

namespace outbox {

std::ostream& operator<<(std::ostream& os, const Credentials& c) {
    os << "Credentials{access_key_id=" << (c.access_key_id.empty() ? "<none>" : c.access_key_id)
       << ", secret_access_key=" << (c.secret_access_key.empty() ? "<none>" : "<redacted>")
       << ", session_token=" << (c.session_token.empty() ? "<none>" : "<redacted>");
    if (c.expiration) {
        const auto secs =
            std::chrono::duration_cast<std::chrono::seconds>(c.expiration->time_since_epoch());
        os << ", expiration=" << secs.count() << "s since epoch";
    }
    return os << '}';
}

}  // namespace outbox
