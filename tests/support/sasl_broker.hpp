// The SASL_SSL test broker (tests/peers/sasl_broker: a TLS and SASL PLAIN front on Sarama's
// MockBroker), with a throwaway CA and server certificate made by openssl, and the records
// it received.
#pragma once

#include "kafka_mock.hpp"
#include "peer_process.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace outbox::test {

class SaslBroker {
  public:
    enum class Mechanism { plain, msk_iam };
    /// Leads `topic` (one partition). plain: accepts user "alice" with password "s3cret-pw".
    /// msk_iam: SASL OAUTHBEARER with Amazon MSK's IAM tokens for msk_region(), signed with
    /// msk_access_key() and msk_secret() (checked by a SigV4 implementation in Go).
    /// `refuse_delay`: refused credentials are answered this late, so a handshake with them
    /// is still in flight meanwhile.
    explicit SaslBroker(const std::string& topic, Mechanism mechanism = Mechanism::plain,
                        std::chrono::milliseconds refuse_delay = std::chrono::milliseconds(0));
    ~SaslBroker();
    SaslBroker(const SaslBroker&) = delete;
    SaslBroker& operator=(const SaslBroker&) = delete;

    std::string bootstrap() const { return "127.0.0.1:" + std::to_string(process_->port()); }
    static std::string user() { return "alice"; }
    static std::string password() { return "s3cret-pw"; }
    static std::string msk_region() { return "eu-west-1"; }
    static std::string msk_access_key() { return "AKIDMSKIAMTEST"; }
    static std::string msk_secret() { return "msk/iam+secret=key"; }
    static std::string msk_session_token() { return "a-session-token/with+chars="; }
    std::string password_file() const { return dir_ + "/password"; }
    std::string wrong_password_file() const { return dir_ + "/wrong-password"; }
    std::string ca_file() const { return dir_ + "/ca.pem"; }
    /// A CA that did not sign the broker's certificate.
    std::string other_ca_file() const { return dir_ + "/other-ca.pem"; }
    /// What the broker received so far (topic in KafkaRecord::key is unused; no offsets).
    std::vector<KafkaRecord> records() const;
    /// SaslAuthenticate requests received so far (counted as they arrive, before the answer).
    std::size_t authentications() const;

  private:
    std::string dir_;
    std::unique_ptr<PeerProcess> process_;
};

}  // namespace outbox::test
