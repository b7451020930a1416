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
