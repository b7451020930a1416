// `outbox sign`: signs a JSON array of request descriptions and reports the canonical
// request, string to sign and signature of each — a debugging aid for SignatureDoesNotMatch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::cli {

struct SignResult {
    std::string id;
    std::string canonical_request;
    std::string string_to_sign;
    std::string signature;
    std::string authorization;  // header modes
    std::string url;            // s3-presign
    std::string token;          // msk-iam-token
    std::int64_t expires_at_ms = 0;
};

/// Signs every request in `json` (a JSON array). On malformed input returns false and sets
/// `error` to a message naming the request and the field.
bool sign_requests(std::string_view json, std::vector<SignResult>& results, std::string& error);

/// The results as a JSON array, one object per line.
std::string results_to_json(const std::vector<SignResult>& results);

int run_sign(int argc, char** argv);

}  // namespace outbox::cli
