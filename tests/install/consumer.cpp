// Built against an installed outbox (tests/install) and by Conan's test_package: signs
// AWS's get-vanilla example and checks the published signature.
#include <outbox/sigv4.hpp>

#include <iostream>

int main() {
    const outbox::sigv4::Signer signer({.region = "us-east-1", .service = "service"});
    const outbox::Credentials credentials{.access_key_id = "AKIDEXAMPLE",
                                          .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
    std::chrono::system_clock::time_point when;
    if (outbox::sigv4::parse_amz_date("20150830T123600Z", when)) return 1;
    outbox::sigv4::HeaderSignature signature;
    if (auto ec = signer.sign_headers({.host = "example.amazonaws.com"}, credentials, when, signature)) {
        std::cerr << "signing failed: " << ec.message() << "\n";
        return 1;
    }
    const bool ok = signature.signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    std::cout << "outbox consumer: " << signature.authorization << (ok ? " (matches AWS's vector)" : " (WRONG)")
              << "\n";
    return ok ? 0 : 1;
}
