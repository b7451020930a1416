#include "sasl_broker.hpp"

#include <simdjson.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace outbox::test {

namespace {

// Runs openssl with its chatter (to standard error) captured, shown only on failure.
void openssl(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/bin/sh", "-c", "exec openssl \"$@\" 2>&1", "openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    if (run_command(argv, out) != 0)
        throw std::runtime_error("openssl " + args[0] + " failed: " + out);
}

}  // namespace

SaslBroker::SaslBroker(const std::string& topic, Mechanism mechanism,
                       std::chrono::milliseconds refuse_delay) {
    namespace fs = std::filesystem;
    static int instance = 0;
    dir_ = (fs::temp_directory_path() /
            ("outbox-sasl-" + std::to_string(::getpid()) + "-" + std::to_string(instance++)))
               .string();
    fs::create_directories(dir_);
    const std::string d = dir_ + "/";
    auto self_signed = [&](const std::string& name, const std::string& cn) {
        openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", d + name + ".key", "-out", d + name + ".pem", "-days", "2",
                 "-subj", "/CN=" + cn});
    };
    self_signed("ca", "outbox test CA");
    self_signed("other-ca", "someone else's CA");
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", d + "server.key", "-out", d + "server.csr", "-subj", "/CN=127.0.0.1"});
    std::ofstream(d + "san.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    openssl({"x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.pem", "-CAkey", d + "ca.key",
             "-CAcreateserial", "-out", d + "server.pem", "-days", "2", "-extfile", d + "san.ext"});
    const bool msk = mechanism == Mechanism::msk_iam;
    std::ofstream(password_file()) << (msk ? msk_secret() : password()) << "\n";
    std::ofstream(wrong_password_file()) << "not-the-password\n";
    std::vector<std::string> argv{OUTBOX_SASL_BROKER_PATH,
                                  "-cert",
                                  d + "server.pem",
                                  "-key",
                                  d + "server.key",
                                  "-user",
                                  user(),
                                  "-password-file",
                                  password_file(),
                                  "-topic",
                                  topic,
                                  "-records",
                                  d + "records.jsonl",
                                  "-auth-log",
                                  d + "authentications",
                                  "-refuse-delay",
                                  std::to_string(refuse_delay.count()) + "ms"};
    if (msk)
        argv.insert(argv.end(),
                    {"-mechanism", "OAUTHBEARER", "-msk-region", msk_region(), "-msk-access-key",
                     msk_access_key(), "-msk-session-token", msk_session_token()});
    process_ = std::make_unique<PeerProcess>(argv);
}

SaslBroker::~SaslBroker() {
    process_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

std::size_t SaslBroker::authentications() const {
    std::ifstream in(dir_ + "/authentications");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
}

std::vector<KafkaRecord> SaslBroker::records() const {
    std::ifstream in(dir_ + "/records.jsonl");
    std::vector<KafkaRecord> out;
    simdjson::dom::parser parser;
    for (std::string line; std::getline(in, line);) {
        simdjson::dom::element doc = parser.parse(line);
        KafkaRecord r;
        r.partition = static_cast<std::int32_t>(int64_t(doc["partition"]));
        r.payload = std::string(std::string_view(doc["value"]));
        simdjson::dom::array headers = doc["headers"];
        for (std::size_t i = 0; i + 1 < headers.size(); i += 2)
            r.headers.emplace_back(std::string(std::string_view(headers.at(i))),
                                   std::string(std::string_view(headers.at(i + 1))));
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace outbox::test
