// Long-lived links to staged payloads, for consumers that fall behind the pre-signed URL's
// lifetime: a link signed with our own key (HMAC-SHA256) that a small service answers with a
// redirect to a freshly pre-signed URL. See docs/staging.md ("Links that outlive a lagging
// consumer") for the security model.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/logging.hpp>
#include <outbox/payload_stager.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace outbox {

/// A signing key: an id carried in the link (1 to 32 of A-Z a-z 0-9 _ -) and a secret of at
/// least 32 bytes that never leaves the process.
struct PayloadLinkKey {
    std::string id{};
    std::string secret{};
};

/// Reads keys from a file of lines "ID SECRET" (blank lines and lines starting with '#'
/// skipped); the first key signs. Throws std::invalid_argument naming the file and line.
std::vector<PayloadLinkKey> read_payload_link_keys(const std::string& path);

/// What checking a link found.
enum class PayloadLinkStatus {
    valid,
    malformed,      // not a link of this service's shape
    unknown_key,    // signed with a key id not (or no longer) configured
    bad_signature,  // altered, or signed with another secret
    expired,
};

/// Makes and checks links BASE/p/BUCKET/KEY?exp=UNIX_SECONDS&kid=ID&sig=HEX. The signature
/// covers the key id, bucket, object key and expiry; the link holds no secret and no AWS
/// credential. Every configured key verifies; the first signs (rotation: add the new key
/// first, remove the old one once its links have expired).
class PayloadLinks {
  public:
    /// `base_url`: where the service answers, http(s)://HOST[:PORT] without a path
    /// ("https://links.example.com"; empty for a service that only checks). Throws
    /// std::invalid_argument for no keys, a bad key id, a secret under 32 bytes, two keys with
    /// one id, or another base URL.
    PayloadLinks(std::string base_url, std::vector<PayloadLinkKey> keys);

    /// The link to `bucket`/`key`, valid until `expires` (whole seconds, before the year
    /// 10000). Throws std::invalid_argument for an invalid bucket name or an empty key.
    std::string link(std::string_view bucket, std::string_view key,
                     std::chrono::system_clock::time_point expires) const;

    struct Target {
        std::string bucket{};
        std::string key{};
        std::chrono::system_clock::time_point expires{};
    };
    /// Checks a request target (path and query, as an HTTP server receives it) at `now`;
    /// `out` is filled when the status is valid (and expired, for the message).
    PayloadLinkStatus check(std::string_view target, std::chrono::system_clock::time_point now,
                            Target& out) const;

    const std::string& base_url() const noexcept { return base_url_; }

  private:
    std::string base_url_;
    std::vector<PayloadLinkKey> keys_;
};

struct PayloadLinkServiceConfig {
    std::shared_ptr<const PayloadLinks> links{};  // required
    /// Where the objects are, as for PayloadStagerConfig (a region is required; an endpoint
    /// gives path-style URLs on that server).
    std::string region{};
    std::string endpoint{};
    S3Addressing addressing = S3Addressing::virtual_hosted;
    CredentialsProviderPtr credentials{};  // required: they sign the fresh URLs
    /// The redirect's URL lifetime: short, as it is used at once (1 s to 7 days).
    std::chrono::seconds url_expires{60};
    /// Buckets links may name; empty: any (the signature already limits links to ours).
    std::vector<std::string> buckets{};
    Logger logger{};
};

/// An HTTP/1.1 server (Beast) answering GET and HEAD /p/... : 302 to a URL pre-signed at that
/// moment for the same method, for a valid link; 410 for an expired one; 403 for one whose
/// signature fails, signed with an unknown key or naming a bucket not allowed; 404 for what is
/// not shaped as a link. Plain HTTP: put it behind the TLS terminator that serves the base URL.
/// One request per connection, 10-second deadlines to read and write it, at most 64
/// connections at once (503 beyond).
class PayloadLinkService {
  public:
    /// Throws std::invalid_argument for a configuration that cannot work.
    PayloadLinkService(boost::asio::any_io_executor executor, PayloadLinkServiceConfig config);
    ~PayloadLinkService();
    PayloadLinkService(const PayloadLinkService&) = delete;
    PayloadLinkService& operator=(const PayloadLinkService&) = delete;

    /// Starts listening (throws boost::system::system_error when it cannot).
    void listen(const boost::asio::ip::tcp::endpoint& where);
    std::uint16_t port() const;
    /// Stops accepting and closes the connections being served.
    void stop();

  private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace outbox
