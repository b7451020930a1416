// An asynchronous HTTP/1.1 client with a keep-alive connection pool per origin, TLS verified
// by default, and deadlines on every phase. It carries outbox's requests to SQS, S3 and the
// credentials endpoints.
#pragma once

#include <outbox/error.hpp>
#include <outbox/logging.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox {

/// Where a request goes: scheme, host and port. Connections are pooled per origin.
struct HttpOrigin {
    bool tls = true;
    std::string host{};  // a name, an IPv4 address, or an IPv6 address without brackets
    std::uint16_t port = 443;

    /// The Host header: host, plus ":port" when not the scheme's default.
    std::string host_header() const;
    friend bool operator==(const HttpOrigin&, const HttpOrigin&) = default;
};

/// Splits an absolute http or https URL into its origin and request target (path and
/// query). Errors: Errc::invalid_url, with `why` (when given) saying what is wrong: not a URL,
/// another scheme, user information, a host that is not a plain name or IP address, a port
/// outside 1-65535.
boost::system::error_code parse_http_url(std::string_view url, HttpOrigin& origin,
                                         std::string& target, std::string* why = nullptr);

struct HttpRequest {
    std::string method = "GET";
    HttpOrigin origin{};
    std::string target = "/";  // path and query, percent-encoded
    // Host and User-Agent are added before these; Content-Length after them, from the body
    // (a caller's own Content-Length and Transfer-Encoding are left out).
    std::vector<std::pair<std::string, std::string>> headers{};
    std::string body{};
    std::optional<std::chrono::milliseconds>
        timeout{};  // overrides HttpClientConfig::request_timeout
};

struct HttpResponse {
    unsigned status = 0;
    std::vector<std::pair<std::string, std::string>> headers{};
    std::string body{};
    /// When the request failed: what failed and where, for people ("cannot connect to
    /// 127.0.0.1:4566: Connection refused", "TLS handshake with sqs.eu-west-1.amazonaws.com:443
    /// failed: certificate verify failed: certificate has expired"). Empty otherwise.
    std::string failure{};

    /// The first header of that name (case-insensitive), or empty.
    std::string_view header(std::string_view name) const noexcept;
};

struct TlsOptions {
    // Peer certificate and host name verification. Turning it off is logged as a warning.
    bool verify_peer = true;
    // A PEM file of CA certificates to trust in addition to the system store. Empty: the file
    // AWS_CA_BUNDLE names, if set.
    std::string ca_file{};
};

struct HttpClientConfig {
    std::chrono::milliseconds connect_timeout{3000};  // name resolution and TCP connect
    std::chrono::milliseconds tls_handshake_timeout{5000};
    std::chrono::milliseconds request_timeout{30000};  // from the start to the whole response
    std::size_t max_connections_per_origin = 32;
    // Pooled connections are closed after this long unused, before servers close them
    // (S3 and SQS load balancers drop idle connections after about 20 to 60 seconds).
    // Zero: no pooling, each connection is closed after its response.
    std::chrono::milliseconds idle_timeout{15000};
    std::chrono::milliseconds dns_cache_ttl{30000};
    std::size_t max_response_header_bytes = 64 * 1024;
    std::size_t max_response_body_bytes = 16 * 1024 * 1024;
    std::string user_agent = "outbox/0.1";
    TlsOptions tls{};
    Logger logger{};
};

/// Counters for tests and observability.
struct HttpClientStats {
    std::uint64_t connections_opened = 0;
    std::uint64_t connections_reused = 0;
    std::uint64_t stale_connections_dropped = 0;  // found closed by the server before use
    std::size_t idle_connections = 0;
};

/// Thread-safe: requests may be started from any thread; the client serialises its state
/// on a strand of the executor it was given. TLS contexts (with the CA store they load) are
/// shared by every client in the process with the same TlsOptions, and loaded on the first
/// TLS connection, so constructing a client costs no file reads.
class HttpClient {
  public:
    /// Throws std::invalid_argument for an unreadable CA file (TlsOptions::ca_file or
    /// AWS_CA_BUNDLE).
    HttpClient(boost::asio::any_io_executor executor, HttpClientConfig config = {});
    ~HttpClient();  // closes idle connections; requests in flight finish or fail, never hang
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    using executor_type = boost::asio::any_io_executor;
    executor_type get_executor() const noexcept;

    /// Sends `request` and reads the whole response. Completion: void(error_code, HttpResponse),
    /// on the handler's associated executor, never inside this call. An HTTP error status is
    /// not an error here: look at HttpResponse::status.
    ///
    /// On failure HttpResponse::failure says what failed and where.
    /// Errors: Errc::invalid_argument (a method, target, header field, host or configured
    /// User-Agent with a CR, LF or NUL, which would split the request: not sent), Errc::timeout
    /// (deadline passed before the request was written: not sent), Errc::outcome_unknown (written,
    /// but no complete reply: the server may have acted), Errc::response_too_large,
    /// Errc::malformed_response, connection errors from the system category (refused, unreachable:
    /// not sent), name resolution errors, TLS errors (e.g. certificate verification failed).
    ///
    /// Cancellation (terminal and partial): before the request is written the operation
    /// completes with asio::error::operation_aborted (not sent, safe to retry); after that,
    /// with Errc::outcome_unknown.
    template <class CompletionToken>
    auto async_request(HttpRequest request, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, HttpResponse)>(
            [this](auto handler, HttpRequest req) {
                start(std::move(req),
                      boost::asio::any_completion_handler<void(boost::system::error_code,
                                                               HttpResponse)>(std::move(handler)));
            },
            token, std::move(request));
    }

    /// Closes idle connections and fails later requests with operation_aborted; requests in
    /// flight finish, by their deadlines at the latest. Lets an event loop run out of work once
    /// its users are done.
    void close();

    /// Closes idle connections only; later requests open new ones. For a client shared by
    /// users that come and go (a stager behind several destinations).
    void close_idle();

    HttpClientStats stats() const;

  private:
    struct Impl;
    void start(
        HttpRequest request,
        boost::asio::any_completion_handler<void(boost::system::error_code, HttpResponse)> handler);
    std::shared_ptr<Impl> impl_;
};

}  // namespace outbox
