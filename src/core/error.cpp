#include <outbox/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <string>

namespace outbox {
namespace {

// boost::system::error_category has a protected non-virtual destructor by design.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class Category final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "outbox"; }

    std::string message(int ev) const override {
        switch (static_cast<Errc>(ev)) {
            case Errc::invalid_argument:
                return "invalid argument";
            case Errc::invalid_timestamp:
                return "invalid timestamp: expected YYYYMMDD'T'HHMMSS'Z' (UTC), a real date and "
                       "time";
            case Errc::invalid_expiry:
                return "invalid expiry: a pre-signed URL lives from 1 to 604800 seconds (7 days)";
            case Errc::invalid_url:
                return "invalid URL";
            case Errc::missing_credentials:
                return "missing credentials: no access key id or secret access key";
            case Errc::timeout:
                return "timed out, and no attempt may have been delivered";
            case Errc::outcome_unknown:
                return "the request was sent but no complete reply came back: outcome unknown";
            case Errc::response_too_large:
                return "response larger than the configured limit";
            case Errc::malformed_response:
                return "malformed HTTP response";
            case Errc::credentials_not_found:
                return "no AWS credentials found";
            case Errc::credentials_expired:
                return "AWS credentials expired";
            case Errc::credentials_endpoint_error:
                return "the credentials endpoint answered with an error";
            case Errc::invalid_credentials_response:
                return "the credentials endpoint's answer could not be read";
            case Errc::unsupported_profile:
                return "the profile uses a credential source outbox does not support";
            case Errc::unreadable_profile_file:
                return "an AWS profile file cannot be read (not a regular file, or larger than "
                       "1 MiB; the log names it)";
            case Errc::payload_too_large:
                return "message larger than the destination accepts, and no stager is configured";
            case Errc::invalid_message:
                return "invalid message";
            case Errc::throttled:
                return "throttled by the service";
            case Errc::service_unavailable:
                return "the service is unavailable (server error)";
            case Errc::service_error:
                return "the service refused the request";
            case Errc::checksum_mismatch:
                return "the service reported a different MD5 than the one sent";
            case Errc::authentication_failed:
                return "authentication failed: the broker refused the credentials";
            case Errc::tls_error:
                return "TLS handshake failed";
            case Errc::topic_not_found:
                return "the topic does not exist and could not be created";
            case Errc::no_route:
                return "no destination for the message";
            case Errc::store_error:
                return "the outbox's store failed";
            case Errc::store_full:
                return "the outbox's store is full";
            case Errc::close_timeout:
                return "the close deadline passed before every message was delivered; the rest "
                       "failed";
            case Errc::target_unavailable:
                return "the target is unavailable: its circuit breaker is open after repeated "
                       "failures";
            case Errc::target_busy:
                return "the target is busy: it holds its maximum of messages in flight, or is over "
                       "its rate limit";
        }
        return "unknown outbox error " + std::to_string(ev);
    }
};
#pragma GCC diagnostic pop

}  // namespace

const boost::system::error_category& error_category() noexcept {
    static const Category category;
    return category;
}

bool is_retryable(const boost::system::error_code& ec) noexcept {
    if (!ec) return false;
    if (ec.category() == error_category()) {
        switch (static_cast<Errc>(ec.value())) {
            case Errc::timeout:
            case Errc::outcome_unknown:
            case Errc::malformed_response:
            case Errc::throttled:
            case Errc::service_unavailable:
            case Errc::credentials_endpoint_error:
            case Errc::target_unavailable:
            case Errc::target_busy:
                return true;
            default:
                return false;
        }
    }
    namespace ae = boost::asio::error;
    if (ec == ae::operation_aborted) return false;
    // Transport failures before or while talking to the server: connection refused, reset,
    // unreachable, name resolution hiccups, a TLS stream cut short.
    if (ec.category() == boost::system::system_category() ||
        ec.category() == boost::system::generic_category() ||
        ec.category() == ae::get_misc_category() || ec.category() == ae::get_netdb_category() ||
        ec == boost::asio::ssl::error::stream_truncated)
        return ec != ae::host_not_found && ec != ae::access_denied;
    return false;
}

}  // namespace outbox
