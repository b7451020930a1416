// Amazon MSK's IAM authentication: the SASL OAUTHBEARER token a Kafka client presents, made by
// our own SigV4 signer the way AWS's aws-msk-iam-sasl-signer libraries make it — a pre-signed
// GET https://kafka.REGION.amazonaws.com/?Action=kafka-cluster%3AConnect (service
// kafka-cluster, 900 s, the hash of an empty body), a User-Agent parameter added after
// signing, base64url without padding. See docs/kafka.md.
#pragma once

#include <outbox/credentials.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace outbox {

struct MskIamToken {
    std::string token{};             // what OAUTHBEARER sends: a bearer credential, keep it secret
    std::int64_t expires_at_ms = 0;  // Unix time in milliseconds: signing time + 900 s
};

/// The User-Agent parameter outbox's tokens carry (brokers log it).
inline constexpr std::string_view msk_iam_user_agent = "outbox-msk-iam";

/// Makes the token for the cluster's `region` with `credentials` at `now` (a session token,
/// when the credentials have one, is signed into it). Errors: Errc::invalid_argument for a
/// region that is empty or not lowercase letters, digits and '-'; Errc::missing_credentials.
boost::system::error_code make_msk_iam_token(std::string_view region,
                                             const Credentials& credentials,
                                             std::chrono::system_clock::time_point now,
                                             MskIamToken& out,
                                             std::string_view user_agent = msk_iam_user_agent);

}  // namespace outbox
