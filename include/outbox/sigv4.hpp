// AWS Signature Version 4: header signing (SQS and other JSON-protocol services, S3 requests)
// and query signing (S3 pre-signed URLs). Pure code: no I/O, the caller passes the time.
#pragma once

#include <outbox/credentials.hpp>
#include <outbox/error.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace outbox::sigv4 {

/// How the canonical URI is derived from the request path.
enum class PathRule {
    // Every service but S3: remove `.`/`..` segments and collapse `//`, then URI-encode the
    // path as given. A path that is already percent-encoded on the wire is encoded twice.
    normalize_and_encode,
    // As above, without the normalisation (rarely needed; the AWS vectors test it).
    encode_only,
    // S3: the path exactly as sent on the wire (percent-encoded once), never normalised.
    // Bytes that cannot appear on the wire unencoded are encoded; valid %XX stays.
    s3,
};

struct Header {
    std::string_view name{};
    std::string_view value{};
};

/// The parts of an HTTP request that a signature covers. Views into the caller's storage.
struct Request {
    std::string_view method = "GET";
    std::string_view host{};  // the Host header as sent: "name", or "name:port" when not default
    std::string_view path = "/";        // as sent on the wire; empty means "/"
    std::string_view query{};           // as sent on the wire, without the '?'
    std::span<const Header> headers{};  // the other headers that will be sent, in order
    // Lowercase hex SHA-256 of the body, or a literal such as UNSIGNED-PAYLOAD. Empty means
    // the hash of an empty body in header mode and UNSIGNED-PAYLOAD when pre-signing.
    std::string_view payload_hash{};
};

struct SignerConfig {
    std::string region{};
    std::string service{};
    PathRule path_rule = PathRule::normalize_and_encode;
    // S3 wants x-amz-content-sha256 on every request: add and sign it (header mode).
    bool send_content_sha256 = false;
    // A few services want X-Amz-Security-Token added after signing rather than signed.
    bool sign_session_token = true;
};

/// The canonical request and string to sign, for debugging SignatureDoesNotMatch.
struct SigningTrace {
    std::string canonical_request{};
    std::string string_to_sign{};
};

/// What header signing adds to a request. Reusing one object across calls reuses its storage.
/// Send: X-Amz-Date, Authorization, X-Amz-Content-SHA256 when non-empty, and
/// X-Amz-Security-Token = credentials.session_token when the credentials have one.
struct HeaderSignature {
    std::string amz_date;        // YYYYMMDD'T'HHMMSS'Z'
    std::string content_sha256;  // empty unless SignerConfig::send_content_sha256
    std::string signed_headers;  // e.g. "host;x-amz-date"
    std::string signature;       // 64 lowercase hex digits
    std::string authorization;
};

/// The query string of a pre-signed URL: the request's own query, then the X-Amz-*
/// parameters, X-Amz-Signature last.
struct PresignedQuery {
    std::string query;
    std::string signature;
};

inline constexpr std::chrono::seconds min_presign_expiry{1};
inline constexpr std::chrono::seconds max_presign_expiry{604800};  // 7 days

/// Signs requests for one (region, service). Caches the derived signing key per
/// (secret key, date). Thread-safe: one Signer may be used from many threads.
class Signer {
  public:
    /// Throws std::invalid_argument when region or service is empty.
    explicit Signer(SignerConfig config);
    ~Signer();
    Signer(Signer&&) noexcept;
    Signer& operator=(Signer&&) noexcept;
    Signer(const Signer&) = delete;
    Signer& operator=(const Signer&) = delete;

    const SignerConfig& config() const noexcept { return config_; }

    /// Authorization-header signing. `now` is read once by the caller: it gives both
    /// X-Amz-Date and the scope date. Errors: Errc::missing_credentials.
    boost::system::error_code sign_headers(const Request& request, const Credentials& credentials,
                                           std::chrono::system_clock::time_point now,
                                           HeaderSignature& out,
                                           SigningTrace* trace = nullptr) const;

    /// Query-string signing (a pre-signed URL); only `host` and the request's headers are
    /// signed. Errors: Errc::invalid_expiry (outside 1..604800 s), Errc::missing_credentials.
    boost::system::error_code presign(const Request& request, const Credentials& credentials,
                                      std::chrono::system_clock::time_point now,
                                      std::chrono::seconds expires, PresignedQuery& out,
                                      SigningTrace* trace = nullptr) const;

  private:
    struct KeyCache;
    SignerConfig config_;
    std::string scope_suffix_;  // "/region/service/aws4_request"
    std::unique_ptr<KeyCache> cache_;
};

/// The payload hash of a body: lowercase hex SHA-256, held without allocating.
struct PayloadHash {
    std::array<char, 64> hex{};
    std::string_view view() const noexcept { return {hex.data(), hex.size()}; }
};
PayloadHash payload_hash(std::string_view body) noexcept;

/// `now` as YYYYMMDD'T'HHMMSS'Z' in UTC.
std::string format_amz_date(std::chrono::system_clock::time_point now);

/// Parses YYYYMMDD'T'HHMMSS'Z'. Errors: Errc::invalid_timestamp.
boost::system::error_code parse_amz_date(std::string_view text,
                                         std::chrono::system_clock::time_point& out);

}  // namespace outbox::sigv4
