// Payload links made and checked without sockets: every part covered by the signature, key
// rotation, expiry, malformed targets, the key file, and what a link reveals.
#include "catch.hpp"

#include <outbox/envelope.hpp>
#include <outbox/payload_links.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

using outbox::PayloadLinkKey;
using outbox::PayloadLinks;
using outbox::PayloadLinkStatus;
using namespace std::chrono;

namespace {

const PayloadLinkKey key_a{"2026-12", std::string(40, 'a')};
const PayloadLinkKey key_b{"2027-01", std::string(40, 'b')};
const auto now = system_clock::time_point(seconds(1796284800));  // 2026-12-03

// The request target a server receives for `link`.
std::string target_of(const std::string& link) {
    return link.substr(link.find("/p/"));
}

PayloadLinkStatus check(const PayloadLinks& links, const std::string& target,
                        PayloadLinks::Target* out = nullptr) {
    PayloadLinks::Target t;
    const auto status = links.check(target, now, t);
    if (out) *out = t;
    return status;
}

}  // namespace

TEST_CASE("a link names its object and expiry, and checks out until it expires", "[links]") {
    const PayloadLinks links("https://links.example.com/", {key_a});
    const std::string link =
        links.link("orders-payloads", "outbox/2026/12/03/a b+é", now + hours(1));
    CHECK(link.starts_with(
        "https://links.example.com/p/orders-payloads/outbox/2026/12/03/a%20b%2B%C3%A9?exp="));
    CHECK(link.find("&kid=2026-12&sig=") != std::string::npos);
    CHECK(link.find(key_a.secret) == std::string::npos);  // nothing secret in it
    PayloadLinks::Target t;
    REQUIRE(check(links, target_of(link), &t) == PayloadLinkStatus::valid);
    CHECK(t.bucket == "orders-payloads");
    CHECK(t.key == "outbox/2026/12/03/a b+é");
    CHECK(t.expires == now + hours(1));
    PayloadLinks::Target later;
    CHECK(links.check(target_of(link), now + hours(1), later) == PayloadLinkStatus::expired);
}

TEST_CASE("every part is signed: bucket, key, expiry, key id", "[links]") {
    const PayloadLinks links("https://links.example.com", {key_a, key_b});
    const std::string target = target_of(links.link("bucket-one", "k/1", now + hours(1)));
    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string t = target;
        const auto at = t.find(from);
        REQUIRE(at != std::string::npos);
        return t.replace(at, from.size(), to);
    };
    CHECK(check(links, replaced("bucket-one", "bucket-two")) == PayloadLinkStatus::bad_signature);
    CHECK(check(links, replaced("k/1", "k/2")) == PayloadLinkStatus::bad_signature);
    const std::string exp = target.substr(target.find("exp=") + 4, 10);
    CHECK(check(links, replaced("exp=" + exp, "exp=" + std::to_string(std::stoll(exp) + 1))) ==
          PayloadLinkStatus::bad_signature);
    CHECK(check(links, replaced("kid=2026-12", "kid=2027-01")) == PayloadLinkStatus::bad_signature);
    CHECK(check(links, replaced("kid=2026-12", "kid=gone")) == PayloadLinkStatus::unknown_key);
    std::string flipped = target;
    flipped.back() = flipped.back() == '0' ? '1' : '0';
    CHECK(check(links, flipped) == PayloadLinkStatus::bad_signature);
    // The signature is checked before the expiry: an altered expired link is not "expired".
    PayloadLinks::Target t;
    CHECK(links.check(flipped, now + hours(2), t) == PayloadLinkStatus::bad_signature);
    // A field boundary cannot move: bucket "b-1", key "x\ny" is not bucket "b-1\nx", key "y".
    const std::string newline_key = target_of(links.link("b-1", "x\ny", now + hours(1)));
    REQUIRE(check(links, newline_key) == PayloadLinkStatus::valid);
    std::string moved = newline_key;
    moved.replace(moved.find("/p/b-1/x%0Ay"), std::string("/p/b-1/x%0Ay").size(), "/p/b-1%0Ax/y");
    CHECK(check(links, moved) == PayloadLinkStatus::malformed);  // not a bucket name
    // Encodings of the same bytes name the same object.
    std::string spelled = target;
    spelled.replace(spelled.find("k/1"), 3, "%6B%2F1");
    CHECK(check(links, spelled) == PayloadLinkStatus::valid);
    // Signed with another secret under the same id.
    const PayloadLinks forger("https://links.example.com", {{"2026-12", std::string(40, 'x')}});
    CHECK(check(links, target_of(forger.link("bucket-one", "k/1", now + hours(1)))) ==
          PayloadLinkStatus::bad_signature);
}

TEST_CASE("rotation: the first key signs, every key verifies, a removed key's links fail",
          "[links]") {
    const PayloadLinks old_only("", {key_a});
    const PayloadLinks rotating("", {key_b, key_a});
    const PayloadLinks new_only("", {key_b});
    const std::string old_link = target_of(old_only.link("b-1", "k", now + hours(1)));
    const std::string new_link = target_of(rotating.link("b-1", "k", now + hours(1)));
    CHECK(new_link.find("kid=2027-01") != std::string::npos);
    CHECK(check(rotating, old_link) == PayloadLinkStatus::valid);
    CHECK(check(rotating, new_link) == PayloadLinkStatus::valid);
    CHECK(check(new_only, old_link) == PayloadLinkStatus::unknown_key);
}

TEST_CASE("targets that are not links", "[links]") {
    const PayloadLinks links("", {key_a});
    const std::string good = target_of(links.link("b-1", "k", now + hours(1)));
    for (const std::string& bad :
         {std::string("/metrics"), std::string("/p/"), std::string("/p/b-1/k"),
          std::string("/p/b-1?exp=1&kid=2026-12&sig=") + std::string(64, '0'), good + "&extra=1",
          good.substr(0, good.size() - 1),
          std::string("/p/b-1/k?exp=soon&kid=2026-12&sig=") + std::string(64, '0'),
          std::string("/p/b-1/k?exp=1&exp=2&kid=2026-12&sig=") + std::string(64, '0'),
          std::string("/p/b-1/k?exp=-5&kid=2026-12&sig=") + std::string(64, '0'),
          std::string("/p/b-1/k?exp=99999999999999&kid=2026-12&sig=") + std::string(64, '0'),
          std::string("/p/Bad_Bucket/k?exp=5&kid=2026-12&sig=") + std::string(64, '0')}) {
        INFO(bad);
        CHECK(check(links, bad) == PayloadLinkStatus::malformed);
    }
}

TEST_CASE("keys: checked when made, read from a file of ID SECRET lines", "[links]") {
    CHECK_THROWS_AS(PayloadLinks("", {}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("", {{"ok", "short"}}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("", {{"bad id!", std::string(32, 's')}}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("", {key_a, key_a}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("ftp://x", {key_a}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("https://x/links", {key_a}), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("", {key_a}).link("Bad_Bucket", "k", now), std::invalid_argument);
    CHECK_THROWS_AS(PayloadLinks("", {key_a}).link("b-1", "", now), std::invalid_argument);
    try {  // columns swapped in a key file: the error must not print the secret
        PayloadLinks("", {{std::string(40, 'z'), "id"}});
        FAIL("a secret taken for a key id was accepted");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find(std::string(40, 'z')) == std::string::npos);
    }

    const auto file = std::filesystem::temp_directory_path() /
                      ("outbox-link-keys-test-" + std::to_string(::getpid()));
    std::ofstream(file) << "# newest first\n\n2027-01 " << key_b.secret << " \r\n2026-12\t"
                        << key_a.secret << "\t\n";
    const auto keys = outbox::read_payload_link_keys(file.string());
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].id == "2027-01");
    CHECK(keys[0].secret == key_b.secret);
    CHECK(keys[1].id == "2026-12");
    CHECK(keys[1].secret == key_a.secret);  // trailing blanks are not part of it
    std::ofstream(file) << "lonely-id\n";
    try {
        (void)outbox::read_payload_link_keys(file.string());
        FAIL("a line without a secret was accepted");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("line 1") != std::string::npos);
    }
    std::filesystem::remove(file);
    CHECK_THROWS_AS(outbox::read_payload_link_keys(file.string()), std::invalid_argument);
}

TEST_CASE("the staged-payload message gains \"link\" only when there is one", "[links]") {
    CHECK(outbox::staged_payload_message("https://u", seconds(600), "") ==
          R"({"status":"success","type":"s3_payload","url":"https://u","expires_in":600})");
    CHECK(outbox::staged_payload_message("https://u", seconds(600), "https://l/p/b/k?x") ==
          R"({"status":"success","type":"s3_payload","url":"https://u","expires_in":600,)"
          R"("link":"https://l/p/b/k?x"})");
}
