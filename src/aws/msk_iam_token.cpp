#include "aws/sigv4/sigv4_canonical.hpp"
#include "core/base64.hpp"

#include <outbox/error.hpp>
#include <outbox/msk_iam_token.hpp>
#include <outbox/sigv4.hpp>

#include <vector>

namespace outbox {

namespace {

// SHA-256 of an empty body: the token's request has none, and AWS's signers hash it.
constexpr std::string_view empty_body_hash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr std::chrono::seconds token_lifetime{900};

bool is_region(std::string_view region) {
    if (region.empty()) return false;
    for (char c : region)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

// Our pre-signed query puts X-Amz-Security-Token in canonical order (before
// X-Amz-SignedHeaders); AWS's signer libraries put it after. The same parameters either way,
// but the token is compared byte for byte with theirs: their order.
std::string in_aws_signer_order(std::string_view query) {
    std::vector<std::string_view> params;
    std::string_view token;
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view p = query.substr(0, amp);
        if (p.starts_with("X-Amz-Security-Token="))
            token = p;
        else
            params.push_back(p);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
    std::string out;
    for (std::string_view p : params) {
        if (!out.empty()) out.push_back('&');
        out.append(p);
        if (!token.empty() && p.starts_with("X-Amz-SignedHeaders=")) {
            out.push_back('&');
            out.append(token);
        }
    }
    return out;
}

}  // namespace

boost::system::error_code make_msk_iam_token(std::string_view region,
                                             const Credentials& credentials,
                                             std::chrono::system_clock::time_point now,
                                             MskIamToken& out, std::string_view user_agent) {
    if (!is_region(region)) return Errc::invalid_argument;
    const std::string host = "kafka." + std::string(region) + ".amazonaws.com";
    const sigv4::Signer signer({.region = std::string(region), .service = "kafka-cluster"});
    const sigv4::Request request{.method = "GET",
                                 .host = host,
                                 .path = "/",
                                 .query = "Action=kafka-cluster%3AConnect",
                                 .payload_hash = empty_body_hash};
    sigv4::PresignedQuery signed_query;
    if (auto ec = signer.presign(request, credentials, now, token_lifetime, signed_query))
        return ec;
    std::string url = "https://" + host + "/?" + in_aws_signer_order(signed_query.query);
    url += "&User-Agent=";
    detail::sigv4::append_uri_encoded(url, user_agent, false);
    std::string token;
    detail::append_base64(token, url);
    for (char& c : token) {  // base64url, without padding
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    while (!token.empty() && token.back() == '=') token.pop_back();
    out.token = std::move(token);
    const auto signed_at = std::chrono::floor<std::chrono::seconds>(now);
    out.expires_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            (signed_at + token_lifetime).time_since_epoch())
                            .count();
    return {};
}

}  // namespace outbox
