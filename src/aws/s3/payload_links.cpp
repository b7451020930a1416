// Long-lived payload links: made and checked here without I/O; the service that answers them
// is payload_link_service.cpp.
#include <outbox/payload_links.hpp>

#include "aws/s3/s3_protocol.hpp"
#include "aws/sigv4/sha256.hpp"
#include "aws/sigv4/sigv4_canonical.hpp"
#include "core/bounded_file.hpp"
#include "core/clock_range.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <sstream>
#include <stdexcept>

namespace outbox {
namespace {

bool is_key_id(std::string_view id) {
    return !id.empty() && id.size() <= 32 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

// What the signature covers: each field prefixed with its length, so no text of one field can
// pass for the end of another (a key may hold any byte, '\n' included); the version names the
// layout.
std::string signed_text(std::string_view kid, std::string_view bucket, std::string_view key,
                        std::string_view expires) {
    std::string text = "outbox-link-v1";
    for (const std::string_view field : {kid, bucket, key, expires})
        text.append("\n").append(std::to_string(field.size())).append(":").append(field);
    return text;
}

// Expiries a link may carry: after 1970, before 2200 (core/clock_range.hpp).
constexpr std::int64_t latest_expiry = detail::clock_range_end_seconds;

std::string signature(const PayloadLinkKey& k, std::string_view bucket, std::string_view key,
                      std::string_view expires) {
    std::string hex;
    detail::append_hex(hex,
                       detail::HmacSha256(k.secret).mac(signed_text(k.id, bucket, key, expires)));
    return hex;
}

}  // namespace

std::vector<PayloadLinkKey> read_payload_link_keys(const std::string& path) {
    std::string text, why;
    switch (detail::read_bounded_file(path, detail::max_config_file_bytes, text, why)) {
        case detail::FileRead::ok:
            break;
        case detail::FileRead::missing:
            throw std::invalid_argument("link keys: " + path + " does not exist");
        case detail::FileRead::refused:
            throw std::invalid_argument("link keys: " + path + ": " + why);
    }
    std::vector<PayloadLinkKey> keys;
    std::istringstream in(text);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        const auto space = line.find_first_of(" \t", first);
        const auto secret_at =
            space == std::string::npos ? std::string::npos : line.find_first_not_of(" \t", space);
        if (secret_at == std::string::npos)
            throw std::invalid_argument("link keys: " + path + " line " + std::to_string(number) +
                                        ": expected \"ID SECRET\"");
        std::string secret = line.substr(secret_at);
        secret.erase(secret.find_last_not_of(" \t") + 1);  // trailing blanks are not the secret
        keys.push_back({line.substr(first, space - first), std::move(secret)});
    }
    if (keys.empty()) throw std::invalid_argument("link keys: " + path + " holds no key");
    return keys;
}

PayloadLinks::PayloadLinks(std::string base_url, std::vector<PayloadLinkKey> keys)
    : base_url_(std::move(base_url)), keys_(std::move(keys)) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("PayloadLinks: " + what);
    };
    require(!keys_.empty(), "no keys");
    for (std::size_t i = 0; i < keys_.size(); ++i) {
        // Not echoed: a file with its columns swapped would print the secret.
        require(is_key_id(keys_[i].id),
                "key " + std::to_string(i + 1) + "'s id must be 1 to 32 of A-Z a-z 0-9 _ -");
        require(keys_[i].secret.size() >= 32,
                "the secret of key \"" + keys_[i].id + "\" is shorter than 32 bytes");
        for (std::size_t j = 0; j < i; ++j)
            require(keys_[j].id != keys_[i].id, "two keys have the id \"" + keys_[i].id + "\"");
    }
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
    const auto authority = base_url_.find("://");
    require(base_url_.empty() ||
                ((base_url_.starts_with("https://") || base_url_.starts_with("http://")) &&
                 base_url_.find_first_of("/?#", authority + 3) == std::string::npos &&
                 base_url_.size() > authority + 3),
            "the base URL \"" + base_url_ +
                "\" must be http(s)://HOST[:PORT], where the service answers /p/...");
}

std::string PayloadLinks::link(std::string_view bucket, std::string_view key,
                               std::chrono::system_clock::time_point expires) const {
    if (!detail::s3::is_valid_bucket_name(bucket))
        throw std::invalid_argument("PayloadLinks: \"" + std::string(bucket) +
                                    "\" is not a valid S3 bucket name");
    if (key.empty()) throw std::invalid_argument("PayloadLinks: an empty object key");
    const PayloadLinkKey& k = keys_.front();
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count();
    const std::string exp = std::to_string(std::clamp<std::int64_t>(seconds, 1, latest_expiry));
    std::string out = base_url_ + "/p/";
    detail::sigv4::append_uri_encoded(out, bucket, false);
    out += '/';
    detail::sigv4::append_uri_encoded(out, key, true);
    out += "?exp=" + exp + "&kid=" + k.id + "&sig=" + signature(k, bucket, key, exp);
    return out;
}

PayloadLinkStatus PayloadLinks::check(std::string_view target,
                                      std::chrono::system_clock::time_point now,
                                      Target& out) const {
    if (!target.starts_with("/p/")) return PayloadLinkStatus::malformed;
    const auto q = target.find('?');
    if (q == std::string_view::npos) return PayloadLinkStatus::malformed;
    const std::string_view path = target.substr(3, q - 3), query = target.substr(q + 1);
    const auto slash = path.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == path.size())
        return PayloadLinkStatus::malformed;
    std::string bucket, key;
    detail::sigv4::append_percent_decoded(bucket, path.substr(0, slash));
    detail::sigv4::append_percent_decoded(key, path.substr(slash + 1));

    std::string_view exp, kid, sig;
    std::size_t seen = 0;
    for (std::size_t at = 0; at <= query.size();) {
        const auto end = std::min(query.find('&', at), query.size());
        const std::string_view part = query.substr(at, end - at);
        const auto eq = part.find('=');
        if (eq == std::string_view::npos) return PayloadLinkStatus::malformed;
        const std::string_view name = part.substr(0, eq), value = part.substr(eq + 1);
        std::string_view* slot = name == "exp"   ? &exp
                                 : name == "kid" ? &kid
                                 : name == "sig" ? &sig
                                                 : nullptr;
        if (!slot || !slot->empty() || value.empty()) return PayloadLinkStatus::malformed;
        *slot = value;
        ++seen;
        at = end + 1;
    }
    std::int64_t expires = 0;
    const auto [p, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), expires);
    if (seen != 3 || ec != std::errc{} || p != exp.data() + exp.size() || sig.size() != 64 ||
        expires < 1 || expires > latest_expiry || !detail::s3::is_valid_bucket_name(bucket) ||
        key.empty())
        return PayloadLinkStatus::malformed;

    const auto k = std::find_if(keys_.begin(), keys_.end(), [&](const PayloadLinkKey& candidate) {
        return candidate.id == kid;
    });
    if (k == keys_.end()) return PayloadLinkStatus::unknown_key;
    const std::string expected = signature(*k, bucket, key, exp);
    if (CRYPTO_memcmp(expected.data(), sig.data(), expected.size()) != 0)
        return PayloadLinkStatus::bad_signature;
    out.bucket = std::move(bucket);
    out.key = std::move(key);
    out.expires = std::chrono::system_clock::time_point(std::chrono::seconds(expires));
    return now >= out.expires ? PayloadLinkStatus::expired : PayloadLinkStatus::valid;
}

}  // namespace outbox
