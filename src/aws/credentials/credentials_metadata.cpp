// Providers that ask an HTTP endpoint: container (ECS, EKS Pod Identity), EC2 instance
// metadata (IMDSv2), STS AssumeRoleWithWebIdentity (EKS IRSA) and STS AssumeRole (a
// customer's role).

// GCC 12 reports Asio's recycled coroutine frames as mismatched new/delete once inlined;
// the frame allocator pairs them correctly.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include <outbox/credentials_providers.hpp>
#include "aws/credentials/credentials_parsing.hpp"
#include "aws/sigv4/sigv4_canonical.hpp"

#include <outbox/aws_environment.hpp>
#include <outbox/sigv4.hpp>
#include "aws/aws_host.hpp"
#include "aws/credentials/credentials_common.hpp"
#include "core/bounded_file.hpp"
#include "core/strand_executor.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace outbox {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using detail::CredentialsHandler;
using detail::env;
using Result = std::pair<error_code, Credentials>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string trimmed(std::string s) {
    const auto first = s.find_first_not_of(" \t\r\n");
    const auto last = s.find_last_not_of(" \t\r\n");
    return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// A token file: a regular file of at most 1 MiB. Nothing (with `why`) otherwise.
std::optional<std::string> read_token_file(const std::string& path, std::string& why) {
    std::string text;
    switch (detail::read_bounded_file(path, detail::max_config_file_bytes, text, why)) {
        case detail::FileRead::ok:
            return trimmed(std::move(text));
        case detail::FileRead::missing:
            why = "no such file";
            return std::nullopt;
        case detail::FileRead::refused:
            return std::nullopt;
    }
    return std::nullopt;
}

// Plain http carries credentials in the clear: only to this machine or to the link-local
// container endpoints (ECS 169.254.170.2, EKS Pod Identity 169.254.170.23).
bool allowed_plain_http_host(const std::string& host) {
    if (host == "localhost") return true;
    error_code ec;
    const auto a = asio::ip::make_address(host, ec);
    if (ec) return false;
    if (a.is_loopback()) return true;
    return host == "169.254.170.2" || host == "169.254.170.23" ||
           a == asio::ip::make_address("fd00:ec2::23");
}

std::string without_trailing_slash(std::string s) {
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
}

HttpClientConfig metadata_http_config(const MetadataOptions& o) {
    HttpClientConfig c;
    c.connect_timeout = o.timeout;
    c.request_timeout = o.timeout;
    c.max_connections_per_origin = 2;
    c.max_response_body_bytes = 64 * 1024;
    c.idle_timeout = std::chrono::milliseconds(0);  // asked rarely: no idle connection to linger
    c.logger = o.logger;
    return c;
}

// A provider whose answer comes from an endpoint: Derived::fetch() runs as a coroutine on
// the provider's strand (so its state needs no lock), the caller's handler on its own executor.
template <class Derived>
class FetchingProvider : public CredentialsProvider, public std::enable_shared_from_this<Derived> {
  protected:
    explicit FetchingProvider(const asio::any_io_executor& ex)
        : executor_(ex), strand_(detail::make_strand_executor(ex)) {}

    void do_get_credentials(Handler h) override {
        auto self = this->shared_from_this();
        asio::co_spawn(strand_, self->fetch(),
                       [self, h = std::move(h)](std::exception_ptr e, Result r) mutable {
                           if (e) r = {make_error_code(asio::error::fault), {}};
                           detail::complete_later(self->executor_, std::move(h), r.first,
                                                  std::move(r.second));
                       });
    }

    asio::any_io_executor executor_;  // the caller's, where handlers complete
    asio::any_io_executor strand_;
};

class ContainerProvider final : public FetchingProvider<ContainerProvider> {
  public:
    ContainerProvider(asio::any_io_executor ex, MetadataOptions o)
        : FetchingProvider(ex), options_(std::move(o)), http_(ex, metadata_http_config(options_)) {}
    std::string name() const override { return "container"; }

    asio::awaitable<Result> fetch() {
        const auto relative = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        const auto full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        std::string url;
        if (relative) {
            url = (options_.endpoint.empty() ? std::string("http://169.254.170.2")
                                             : without_trailing_slash(options_.endpoint)) +
                  *relative;
        } else if (full) {
            url = *full;
        } else {
            co_return Result{Errc::credentials_not_found, {}};
        }
        HttpRequest req;
        if (parse_http_url(url, req.origin, req.target)) co_return Result{Errc::invalid_url, {}};
        if (!relative && !req.origin.tls && !allowed_plain_http_host(req.origin.host)) {
            options_.logger.log(LogLevel::error,
                                "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a "
                                "loopback or container metadata address");
            co_return Result{Errc::invalid_url, {}};
        }
        std::optional<std::string> token;
        if (auto file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) {
            std::string why;
            token = read_token_file(*file, why);
            if (!token) {
                options_.logger.log(
                    LogLevel::error,
                    "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " + *file + ": " + why);
                co_return Result{Errc::invalid_argument, {}};
            }
        } else {
            token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        }
        if (token) {
            if (token->find_first_of("\r\n") != std::string::npos)
                co_return Result{Errc::invalid_argument, {}};
            req.headers.emplace_back("Authorization", *token);
        }
        auto [ec, res] = co_await http_.async_request(std::move(req), use_tuple);
        if (ec) co_return Result{ec, {}};
        if (res.status != 200) {
            options_.logger.log(LogLevel::warning, "container credentials endpoint answered HTTP " +
                                                       std::to_string(res.status));
            co_return Result{Errc::credentials_endpoint_error, {}};
        }
        Credentials c;
        if (auto perr = detail::parse_credentials_json(res.body, c)) co_return Result{perr, {}};
        co_return Result{{}, std::move(c)};
    }

  private:
    MetadataOptions options_;
    HttpClient http_;
};

class InstanceMetadataProvider final : public FetchingProvider<InstanceMetadataProvider> {
  public:
    InstanceMetadataProvider(asio::any_io_executor ex, MetadataOptions o)
        : FetchingProvider(ex), options_(std::move(o)), http_(ex, metadata_http_config(options_)) {}
    std::string name() const override { return "instance metadata"; }

    asio::awaitable<Result> fetch() {
        if (auto disabled = env("AWS_EC2_METADATA_DISABLED")) {
            std::string v = *disabled;
            for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (v == "true") co_return Result{Errc::credentials_not_found, {}};
        }
        const std::string base = without_trailing_slash(
            !options_.endpoint.empty()
                ? options_.endpoint
                : env("AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("http://169.254.169.254"));
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (token_.empty() || std::chrono::steady_clock::now() >= token_expires_) {
                // (No structured bindings around co_await here: GCC 12 miscompiles them in loops.)
                HttpRequest put_req = request(base, "PUT", "/latest/api/token");
                put_req.headers.emplace_back("X-aws-ec2-metadata-token-ttl-seconds", "21600");
                const auto put = co_await http_.async_request(std::move(put_req), use_tuple);
                const error_code& ec = std::get<0>(put);
                const HttpResponse& res = std::get<1>(put);
                // Not on EC2 (nothing answers in time) or IMDS turned off: nothing here.
                if (ec || res.status == 403 || res.status == 404)
                    co_return not_here(ec, res.status);
                if (res.status != 200 || res.body.empty())
                    co_return Result{Errc::credentials_endpoint_error, {}};
                token_ = trimmed(res.body);
                token_expires_ = std::chrono::steady_clock::now() + std::chrono::hours(5);
            }
            HttpRequest list_req =
                request(base, "GET", "/latest/meta-data/iam/security-credentials/");
            const auto listed = co_await http_.async_request(std::move(list_req), use_tuple);
            const error_code& ec = std::get<0>(listed);
            const HttpResponse& roles = std::get<1>(listed);
            if (!ec && roles.status == 401) {  // the session token expired early
                token_.clear();
                continue;
            }
            if (ec) co_return Result{ec, {}};
            if (roles.status == 404) co_return not_here({}, 404);  // no instance profile attached
            if (roles.status != 200) co_return Result{Errc::credentials_endpoint_error, {}};
            const std::string role = trimmed(roles.body.substr(0, roles.body.find('\n')));
            if (role.empty() || role.find_first_of("/?#% ") != std::string::npos)
                co_return Result{Errc::invalid_credentials_response, {}};
            HttpRequest get_req =
                request(base, "GET", "/latest/meta-data/iam/security-credentials/" + role);
            const auto fetched = co_await http_.async_request(std::move(get_req), use_tuple);
            const error_code& cec = std::get<0>(fetched);
            const HttpResponse& res = std::get<1>(fetched);
            if (cec) co_return Result{cec, {}};
            if (res.status != 200) co_return Result{Errc::credentials_endpoint_error, {}};
            Credentials c;
            if (auto perr = detail::parse_credentials_json(res.body, c)) co_return Result{perr, {}};
            co_return Result{{}, std::move(c)};
        }
        co_return Result{Errc::credentials_endpoint_error, {}};
    }

  private:
    Result not_here(error_code ec, unsigned status) const {
        options_.logger.log(LogLevel::debug,
                            "instance metadata not available: " +
                                (ec ? ec.message() : "HTTP " + std::to_string(status)));
        return {Errc::credentials_not_found, {}};
    }

    // The endpoint comes from configuration, so a bad one shows up as a request to a
    // target that fails; parse errors leave the origin empty, which fails to connect.
    HttpRequest request(const std::string& base, const char* method,
                        const std::string& path) const {
        HttpRequest req;
        if (parse_http_url(base + path, req.origin, req.target))
            options_.logger.log(LogLevel::error,
                                "instance metadata endpoint is not a URL: " + base);
        req.method = method;
        if (!token_.empty() && req.method != "PUT")
            req.headers.emplace_back("X-aws-ec2-metadata-token", token_);
        return req;
    }

    MetadataOptions options_;
    HttpClient http_;
    std::string token_;
    std::chrono::steady_clock::time_point token_expires_{};
};

HttpClientConfig sts_http_config(HttpClientConfig c) {
    c.max_response_body_bytes = std::min<std::size_t>(c.max_response_body_bytes, 64 * 1024);
    c.idle_timeout = std::chrono::milliseconds(0);  // asked about once an hour
    return c;
}

std::optional<std::string> configured_region(const std::string& region) {
    if (!region.empty()) return region;
    if (auto r = env("AWS_REGION")) return r;
    return env("AWS_DEFAULT_REGION");
}

// STS's address: `configured`, else the environment's STS endpoint, else the region's.
std::string sts_endpoint(const std::string& configured, const std::string& region,
                         const HttpClientConfig& http) {
    if (!configured.empty()) return configured;
    try {
        if (auto e = endpoint_from_environment("STS"); !e.value.empty()) return e.value;
    } catch (const std::invalid_argument& e) {
        http.logger.log(LogLevel::error, e.what());  // an unreadable config file: the default
    }
    const auto r = configured_region(region);
    return r ? "https://sts." + *r + ".amazonaws.com/" : "https://sts.amazonaws.com/";
}

constexpr const char* form_content_type = "application/x-www-form-urlencoded; charset=utf-8";

// A POST to STS's Query API at `sts`, its form body still empty; nothing (logged) when the
// endpoint is not a URL, or plain http beyond this machine (`secret` would cross in the clear).
std::optional<HttpRequest> sts_post(const std::string& sts, const Logger& logger,
                                    std::string_view secret) {
    HttpRequest req;
    std::string why;
    if (parse_http_url(sts, req.origin, req.target, &why)) {
        logger.log(LogLevel::error, "the STS endpoint " + sts + " is not a URL: " + why);
        return std::nullopt;
    }
    if (!req.origin.tls && !allowed_plain_http_host(req.origin.host)) {
        logger.log(LogLevel::error,
                   "the STS endpoint " + sts + " must be https, or http to a loopback address: " +
                       std::string(secret) + " would cross the network in the clear");
        return std::nullopt;
    }
    req.method = "POST";
    req.headers = {{"Content-Type", form_content_type}};
    return req;
}

void add_form_param(std::string& body, std::string_view name, std::string_view value) {
    if (!body.empty()) body.push_back('&');
    body.append(name);
    body.push_back('=');
    detail::sigv4::append_uri_encoded(body, value, false);
}

std::string default_session_name(std::chrono::system_clock::time_point now) {
    return "outbox-" +
           std::to_string(
               std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
}

// STS's answer to `action`: the credentials, or the error (STS's code and message logged).
Result sts_credentials(const HttpResponse& res, const std::string& action, const Logger& logger) {
    Credentials c;
    std::string sts_error;
    const error_code perr = detail::parse_sts_credentials_xml(res.body, c, sts_error);
    if (res.status != 200 || perr) {
        logger.log(LogLevel::warning, "STS " + action + " failed: HTTP " +
                                          std::to_string(res.status) +
                                          (sts_error.empty() ? "" : " " + sts_error));
        return {res.status != 200 ? error_code(Errc::credentials_endpoint_error) : perr, {}};
    }
    return {{}, std::move(c)};
}

class WebIdentityProvider final : public FetchingProvider<WebIdentityProvider> {
  public:
    WebIdentityProvider(asio::any_io_executor ex, WebIdentityOptions o)
        : FetchingProvider(ex), options_(std::move(o)), http_(ex, sts_http_config(options_.http)) {}
    std::string name() const override { return "web identity"; }

    asio::awaitable<Result> fetch() {
        const auto token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
        const auto role_arn = env("AWS_ROLE_ARN");
        if (!token_file || !role_arn) co_return Result{Errc::credentials_not_found, {}};
        std::string why;
        const auto token = read_token_file(*token_file, why);
        if (!token || token->empty()) {
            log(LogLevel::error, "cannot read AWS_WEB_IDENTITY_TOKEN_FILE " + *token_file + ": " +
                                     (token ? "it is empty" : why));
            co_return Result{Errc::invalid_argument, {}};
        }
        const std::string session =
            env("AWS_ROLE_SESSION_NAME")
                .value_or(default_session_name(std::chrono::system_clock::now()));
        auto req = sts_post(endpoint(), options_.http.logger, "the web identity token");
        if (!req) co_return Result{Errc::invalid_url, {}};
        add_form_param(req->body, "Action", "AssumeRoleWithWebIdentity");
        add_form_param(req->body, "RoleArn", *role_arn);
        add_form_param(req->body, "RoleSessionName", session);
        add_form_param(req->body, "Version", "2011-06-15");
        add_form_param(req->body, "WebIdentityToken", *token);
        auto [ec, res] = co_await http_.async_request(std::move(*req), use_tuple);
        if (ec) co_return Result{ec, {}};
        co_return sts_credentials(res, "AssumeRoleWithWebIdentity", options_.http.logger);
    }

  private:
    std::string endpoint() const { return sts_endpoint(options_.sts_endpoint, {}, options_.http); }

    void log(LogLevel level, const std::string& message) const {
        options_.http.logger.log(level, message);
    }

    WebIdentityOptions options_;
    HttpClient http_;
};

class AssumeRoleProvider final : public FetchingProvider<AssumeRoleProvider> {
  public:
    AssumeRoleProvider(asio::any_io_executor ex, CredentialsProviderPtr source, AssumeRoleOptions o)
        : FetchingProvider(ex),
          source_(std::move(source)),
          options_(std::move(o)),
          http_(ex, sts_http_config(options_.http)) {}
    std::string name() const override { return "assume role " + options_.role_arn; }

    asio::awaitable<Result> fetch() {
        auto [source_error, source] = co_await source_->async_get_credentials(use_tuple);
        if (source_error) {
            log(LogLevel::error, "AssumeRole " + options_.role_arn + ": the source credentials (" +
                                     source_->name() + "): " + source_error.message());
            co_return Result{source_error, {}};
        }
        auto sts = sts_post(sts_endpoint(options_.sts_endpoint, options_.region, options_.http),
                            options_.http.logger, "the customer's credentials");
        if (!sts) co_return Result{Errc::invalid_url, {}};
        HttpRequest& req = *sts;
        const auto now = std::chrono::system_clock::now();
        add_form_param(req.body, "Action", "AssumeRole");
        add_form_param(req.body, "DurationSeconds", std::to_string(options_.duration.count()));
        if (!options_.external_id.empty())
            add_form_param(req.body, "ExternalId", options_.external_id);
        add_form_param(req.body, "RoleArn", options_.role_arn);
        add_form_param(
            req.body, "RoleSessionName",
            !options_.session_name.empty() ? options_.session_name : default_session_name(now));
        add_form_param(req.body, "Version", "2011-06-15");

        const std::string host = req.origin.host_header();
        const sigv4::Header signed_headers[] = {{"Content-Type", form_content_type}};
        const auto body_hash = sigv4::payload_hash(req.body);
        const std::size_t query_at = req.target.find('?');
        // The region configured, else the one in a regional endpoint's name (a region signed
        // for that is not the endpoint's is refused), else the global endpoint's us-east-1.
        std::string region = configured_region(options_.region).value_or("");
        if (region.empty()) region = detail::region_in_aws_host(req.origin.host, "sts");
        if (region.empty()) region = "us-east-1";
        const sigv4::Signer signer({.region = region, .service = "sts"});
        sigv4::HeaderSignature signature;
        if (auto ec = signer.sign_headers(
                {.method = "POST",
                 .host = host,
                 .path = std::string_view(req.target).substr(0, query_at),
                 .query = query_at == std::string::npos
                              ? std::string_view{}
                              : std::string_view(req.target).substr(query_at + 1),
                 .headers = signed_headers,
                 .payload_hash = body_hash.view()},
                source, now, signature))
            co_return Result{ec, {}};
        req.headers = {{"Content-Type", form_content_type},
                       {"X-Amz-Date", signature.amz_date},
                       {"Authorization", signature.authorization}};
        if (source.has_session_token())
            req.headers.emplace_back("X-Amz-Security-Token", source.session_token);

        auto [ec, res] = co_await http_.async_request(std::move(req), use_tuple);
        if (ec) co_return Result{ec, {}};
        co_return sts_credentials(res, "AssumeRole " + options_.role_arn, options_.http.logger);
    }

  private:
    void log(LogLevel level, const std::string& message) const {
        options_.http.logger.log(level, message);
    }

    CredentialsProviderPtr source_;
    AssumeRoleOptions options_;
    HttpClient http_;
};

}  // namespace

CredentialsProviderPtr make_assume_role_credentials(asio::any_io_executor executor,
                                                    CredentialsProviderPtr source,
                                                    AssumeRoleOptions options) {
    if (!source) throw std::invalid_argument("make_assume_role_credentials: no source credentials");
    if (options.role_arn.empty())
        throw std::invalid_argument("make_assume_role_credentials: role_arn is empty");
    if (options.duration < std::chrono::seconds(900) || options.duration > std::chrono::hours(12))
        throw std::invalid_argument(
            "make_assume_role_credentials: duration must be 900 to 43200 seconds");
    auto inner = std::make_shared<AssumeRoleProvider>(executor, std::move(source), options);
    CachingOptions caching;
    caching.logger = options.http.logger;
    return make_caching_credentials(std::move(executor), std::move(inner), std::move(caching));
}

CredentialsProviderPtr make_container_credentials(asio::any_io_executor executor,
                                                  MetadataOptions options) {
    return std::make_shared<ContainerProvider>(std::move(executor), std::move(options));
}

CredentialsProviderPtr make_instance_metadata_credentials(asio::any_io_executor executor,
                                                          MetadataOptions options) {
    return std::make_shared<InstanceMetadataProvider>(std::move(executor), std::move(options));
}

CredentialsProviderPtr make_web_identity_credentials(asio::any_io_executor executor,
                                                     WebIdentityOptions options) {
    return std::make_shared<WebIdentityProvider>(std::move(executor), std::move(options));
}

}  // namespace outbox
