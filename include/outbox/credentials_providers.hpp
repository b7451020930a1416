// The credentials providers outbox ships, and the default chain in the AWS SDKs' order:
// environment, web identity, profile files, container, instance metadata, cached.
#pragma once

#include <outbox/credentials_provider.hpp>
#include <outbox/http_client.hpp>
#include <outbox/logging.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace outbox {

/// Fixed keys. Errc::missing_credentials when the key id or secret is empty.
CredentialsProviderPtr make_static_credentials(boost::asio::any_io_executor executor,
                                               Credentials credentials);

/// Keys the application replaces while destinations use them (a customer rotated theirs):
/// every request signed after rotate() returns uses the new keys; none is recreated.
class RotatableCredentials final : public CredentialsProvider {
  public:
    RotatableCredentials(boost::asio::any_io_executor executor, Credentials credentials);
    /// Thread-safe. Requests already signed keep the old keys.
    void rotate(Credentials credentials);
    bool credentials_at_hand(Credentials& out) override;
    std::string name() const override { return "rotatable static"; }

  protected:
    void do_get_credentials(Handler handler) override;

  private:
    boost::asio::any_io_executor executor_;
    mutable std::mutex mutex_;
    Credentials credentials_;
};
/// Errc::missing_credentials (at each call) while the key id or secret is empty.
std::shared_ptr<RotatableCredentials> make_rotatable_credentials(
    boost::asio::any_io_executor executor, Credentials credentials);

/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, read at each call.
CredentialsProviderPtr make_environment_credentials(boost::asio::any_io_executor executor);

struct ProfileOptions {
    std::string profile{};           // empty: AWS_PROFILE, else "default"
    std::string credentials_file{};  // empty: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials
    std::string config_file{};       // empty: AWS_CONFIG_FILE, else ~/.aws/config
    Logger logger{};                 // says which file could not be read, and why
};

/// Static keys from the shared credentials and config files (the credentials file wins).
/// A profile that assumes a role, runs a process or uses SSO fails with
/// Errc::unsupported_profile rather than being skipped silently. The files are small local
/// files read at each call; wrap the provider in make_caching_credentials. A file that is
/// not a regular file (a FIFO, /dev/zero) or is larger than 1 MiB is never read: the call
/// fails with Errc::unreadable_profile_file and the logger names the file and the cause.
CredentialsProviderPtr make_profile_credentials(boost::asio::any_io_executor executor,
                                                ProfileOptions options = {});

struct MetadataOptions {
    std::string endpoint{};  // override of the service's address, e.g. a local test server
    std::chrono::milliseconds timeout{1000};  // per request; also the connect timeout
    Logger logger{};
};

/// ECS and EKS Pod Identity: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or
/// AWS_CONTAINER_CREDENTIALS_FULL_URI (https anywhere; http only to loopback and the
/// container endpoints), with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or
/// AWS_CONTAINER_AUTHORIZATION_TOKEN as the Authorization header.
CredentialsProviderPtr make_container_credentials(boost::asio::any_io_executor executor,
                                                  MetadataOptions options = {});

/// EC2 instance metadata, IMDSv2 only (session token PUT, then role and credentials GET).
/// Endpoint: options, AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254.
/// AWS_EC2_METADATA_DISABLED=true turns it off; off EC2 it fails in about options.timeout.
CredentialsProviderPtr make_instance_metadata_credentials(boost::asio::any_io_executor executor,
                                                          MetadataOptions options = {});

struct WebIdentityOptions {
    // STS endpoint: this, else AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else
    // https://sts.REGION.amazonaws.com (REGION from AWS_REGION or AWS_DEFAULT_REGION), else
    // https://sts.amazonaws.com. Plain http only to a loopback address: the token and the
    // credentials would otherwise cross the network in the clear.
    std::string sts_endpoint{};
    HttpClientConfig http{};
};

/// EKS IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME) exchanged
/// with STS AssumeRoleWithWebIdentity. The token file is read at each call (it rotates).
CredentialsProviderPtr make_web_identity_credentials(boost::asio::any_io_executor executor,
                                                     WebIdentityOptions options = {});

struct AssumeRoleOptions {
    /// The role to assume, in the customer's account: arn:aws:iam::ACCOUNT:role/NAME.
    std::string role_arn{};
    /// The ExternalId the customer's role trusts (AWS's guard against the confused deputy:
    /// give each customer their own, and never let them choose another's). Empty: none sent.
    std::string external_id{};
    /// Empty: "outbox-" and the Unix time. CloudTrail shows it in the customer's account.
    std::string session_name{};
    /// How long the credentials last: 900 s to the role's maximum (1 h unless raised).
    std::chrono::seconds duration{3600};
    /// Signs the request and names the endpoint: this, else AWS_REGION, else
    /// AWS_DEFAULT_REGION, else the region in an sts_endpoint such as
    /// https://sts.eu-west-1.amazonaws.com, else us-east-1 (with the global endpoint).
    std::string region{};
    /// STS endpoint: this, else AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else
    /// https://sts.REGION.amazonaws.com. Plain http only to a loopback address.
    std::string sts_endpoint{};
    HttpClientConfig http{};
};
/// STS AssumeRole with the credentials of `source` (yours), for a third party's role that
/// trusts your account — the way AWS recommends a service reach its customers' resources.
/// Cached and refreshed 5 minutes before expiry (make_caching_credentials): one provider per
/// customer, shared by that customer's destinations. Throws std::invalid_argument without
/// source or role_arn, or with a duration outside 900..43200 s.
CredentialsProviderPtr make_assume_role_credentials(boost::asio::any_io_executor executor,
                                                    CredentialsProviderPtr source,
                                                    AssumeRoleOptions options);
/// Asks each provider in turn; the first that has credentials wins and is asked first next
/// time. When none has any: the first error other than Errc::credentials_not_found, else
/// Errc::credentials_not_found. Each provider's answer is logged at debug level. Its name()
/// lists the providers' names, in order.
CredentialsProviderPtr make_credentials_chain(boost::asio::any_io_executor executor,
                                              std::vector<CredentialsProviderPtr> providers,
                                              Logger logger = {});

struct CachingOptions {
    // Fetch new credentials this long before the cached ones expire; meanwhile callers keep
    // getting the cached ones.
    std::chrono::seconds refresh_before_expiry{300};
    // After a failed refresh, wait this long before trying again: meanwhile credentials
    // still valid keep being served, and without any callers get the failure's error at once
    // (a role refusing us is asked once per wait, not once per message). A destination whose
    // retries all fall within the wait fails its message on that error: lower it for a
    // source whose failures are brief.
    std::chrono::seconds retry_after_failure{10};
    // Empty: system_clock::now. Called from any thread (credentials_at_hand): thread-safe.
    std::function<std::chrono::system_clock::time_point()> clock{};
    Logger logger{};
};

/// Caches what `inner` returns. Concurrent callers share one refresh; a failed refresh keeps
/// serving credentials that are still valid. Thread-safe. Its name() is inner's.
CredentialsProviderPtr make_caching_credentials(boost::asio::any_io_executor executor,
                                                CredentialsProviderPtr inner,
                                                CachingOptions options = {});

struct DefaultCredentialsOptions {
    ProfileOptions profile{};
    MetadataOptions metadata{};
    WebIdentityOptions web_identity{};
    Logger logger{};
};

/// caching(chain(environment, web identity, profile, container, instance metadata)).
CredentialsProviderPtr make_default_credentials(boost::asio::any_io_executor executor,
                                                DefaultCredentialsOptions options = {});

}  // namespace outbox
