// tests/peers/sigv4_proxy.py as a child process: checks every signature with botocore in
// front of a local SQS or S3 server and injects faults (see the script's docstring).
#pragma once

#include "peer_process.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace outbox::test {

class SigV4Proxy {
  public:
    /// `service` is "sqs" or "s3"; `extra` are more arguments (--faults, --seed, ...).
    SigV4Proxy(unsigned short upstream_port, const std::string& service,
               const std::string& access_key, const std::string& secret_key,
               const std::vector<std::string>& extra = {});

    /// A counter from /__proxy/stats: "requests", "signature_failures", "faults.lost"...
    std::uint64_t stat(const std::string& name) const;
    /// /__proxy/stats as it is (JSON).
    std::string stats_json() const;
    /// The headers of the last signed request, names in lower case.
    std::map<std::string, std::string> last_headers() const;
    /// The body of the last signed request (its first 64 KiB).
    std::string last_body() const;
    /// For `seconds` from now, every request has its connection closed unanswered.
    void outage(double seconds) const;
    /// The next `count` signed requests are forwarded and their replies lost.
    void lose_next(int count) const;
    /// The next `count` PUTs are answered 409 ConditionalRequestConflict (S3).
    void conflict_next(int count) const;
    /// The next `count` PUTs are answered 412 PreconditionFailed, as if the key were taken (S3).
    void precondition_next(int count) const;

    PeerProcess process;
};

}  // namespace outbox::test
