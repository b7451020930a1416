// Where credentials come from: an asynchronous, composable source. See
// credentials_providers.hpp for the kinds outbox ships (environment, profiles, container
// and instance metadata, web identity, chains and caching).
#pragma once

#include <outbox/credentials.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>

namespace outbox {

class CredentialsProvider {
  public:
    virtual ~CredentialsProvider() = default;

    /// Completion: void(error_code, Credentials), on the handler's associated executor, never
    /// inside this call. Errors: Errc::credentials_not_found when this source has nothing
    /// (a chain moves on), others when it has something that does not work.
    template <class CompletionToken>
    auto async_get_credentials(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, Credentials)>(
            [this](auto handler) { do_get_credentials(Handler(std::move(handler))); }, token);
    }

    /// The credentials this source holds now, given without I/O, waiting or a trip through
    /// an executor: true with every field of `out` assigned (a sender reuses it, so a field
    /// left alone would carry the previous keys' value). False when it would have to fetch,
    /// refresh or report an error: then ask async_get_credentials, which also says why. A
    /// sender asks this first for each request. Thread-safe. The default holds none, so a
    /// provider written before this existed keeps working, asynchronously.
    virtual bool credentials_at_hand(Credentials& out) {
        (void)out;
        return false;
    }

    /// A short name for logs: "environment", "profile default", "instance metadata", ...
    virtual std::string name() const = 0;

  protected:
    using Handler =
        boost::asio::any_completion_handler<void(boost::system::error_code, Credentials)>;
    virtual void do_get_credentials(Handler handler) = 0;
};

using CredentialsProviderPtr = std::shared_ptr<CredentialsProvider>;

}  // namespace outbox
