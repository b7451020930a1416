#include <outbox/error.hpp>

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
                return "timed out before the request was sent";
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

}  // namespace outbox
