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
    const std::string link = links.link("orders-payloads", "outbox/2026/12/03/a b+é", now + hours(1));
    CHECK(link.starts_with("https://links.example.com/p/orders-payloads/outbox/2026/12/03/a%20b%2B%C3%A9?exp="));
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
          std::string("/p/b-1?exp=1&kid=2026-12&sig=") + std::string(64, '0'),
          good + "&extra=1", good.substr(0, good.size() - 1),
          std::string("/p/b-1/k?exp=soon&kid=2026-12&sig=") + std::string(64, '0'),
          std::string("/p/b-1/k?exp=1&exp=2&kid=2026-12&sig=") + std::string(64, '0')}) {
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

    const auto file = std::filesystem::temp_directory_path() / "outbox-link-keys-test";
    std::ofstream(file) << "# newest first\n\n2027-01 " << key_b.secret << "\r\n2026-12\t"
                        << key_a.secret << "\n";
    const auto keys = outbox::read_payload_link_keys(file.string());
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].id == "2027-01");
    CHECK(keys[0].secret == key_b.secret);
    CHECK(keys[1].id == "2026-12");
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
