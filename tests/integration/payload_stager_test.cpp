// PayloadStager against s3rver (a local S3 that checks signatures and pre-signed URL expiry),
// behind the proxy that checks every signature again with botocore; staged URLs fetched
// with curl; SqsDestination staging end to end with fauxqs.
#include "catch.hpp"
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"
#include "throwing_credentials.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/envelope.hpp>
#include <outbox/payload_links.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sigv4.hpp>
#include <outbox/sqs_destination.hpp>
#include "aws/sqs/sqs_protocol.hpp"

#include <simdjson.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using outbox::test::create_queue;
using outbox::test::fauxqs;
using outbox::test::PeerProcess;
using outbox::test::peers_dir;
using outbox::test::receive_bodies;
using outbox::test::s3rver;

namespace {

// The SigV4-checking proxy in front of s3rver, with s3rver's key pair.
struct Proxy : outbox::test::SigV4Proxy {
    explicit Proxy(const std::vector<std::string>& extra = {})
        : SigV4Proxy(s3rver().port(), "s3", "S3RVER", "S3RVER", extra) {}
};

outbox::PayloadStagerConfig stager_config(asio::io_context& io, const Proxy& proxy) {
    outbox::PayloadStagerConfig c;
    c.bucket = "outbox-staging";
    c.prefix = "payloads";
    c.endpoint = proxy.process.url();
    c.region = "us-east-1";
    c.credentials =
        outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"S3RVER", "S3RVER"});
    c.retry.base_delay = std::chrono::milliseconds(5);
    return c;
}

// A destination on fauxqs (which accepts any key) that stages through `stager`.
outbox::SqsDestinationConfig sqs_config(asio::io_context& io, const std::string& queue,
                                        outbox::PayloadStagerPtr stager) {
    outbox::SqsDestinationConfig c;
    c.queue_url = queue;
    c.endpoint = fauxqs().url();
    c.region = "us-east-1";
    c.credentials =
        outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"S3RVER", "S3RVER"});
    c.stager = std::move(stager);
    return c;
}

struct StageResult {
    error_code ec;
    outbox::StagedPayload payload;
};

StageResult stage(asio::io_context& io, outbox::PayloadStager& stager, std::string body) {
    std::optional<StageResult> result;
    stager.async_stage(std::move(body), [&](error_code ec, outbox::StagedPayload p) {
        result = {ec, std::move(p)};
    });
    io.restart();
    while (!result && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(result);
    return std::move(*result);
}

struct Fetched {
    int status = 0;
    std::string content_type;
    std::string body;
};

// GETs a URL with curl: the independent client a consumer would use.
Fetched fetch(const std::string& url) {
    const fs::path headers =
        fs::temp_directory_path() / ("outbox-fetch-" + std::to_string(::getpid()));
    std::string body;
    REQUIRE(outbox::test::run_command({"curl", "-s", "-D", headers.string(), url}, body) == 0);
    Fetched f;
    f.body = std::move(body);
    std::ifstream in(headers);
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("HTTP/")) f.status = std::stoi(line.substr(line.find(' ') + 1));
        if (line.size() > 13 &&
            (line.starts_with("Content-Type:") || line.starts_with("content-type:")))
            f.content_type = line.substr(14, line.find_last_not_of("\r") - 13);
    }
    fs::remove(headers);
    return f;
}

}  // namespace

TEST_CASE("a staged payload: uploaded, signed, and readable through its pre-signed URL", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    outbox::PayloadStager stager(io.get_executor(), stager_config(io, proxy));
    const std::string body = R"({"order":1001,"lines":[{"sku":"A-1","qty":2}],"note":"caf\u00e9"})";
    auto r = stage(io, stager, body);
    REQUIRE_FALSE(r.ec);
    CHECK(r.payload.bucket == "outbox-staging");
    CHECK(r.payload.key.starts_with("payloads/20"));
    CHECK(r.payload.key.size() == std::string("payloads/2026/11/22/").size() + 36);
    CHECK(r.payload.expires_in == std::chrono::seconds(600));
    CHECK(r.payload.url.find("X-Amz-Expires=600") != std::string::npos);
    CHECK(r.payload.attempts == 1);
    CHECK_FALSE(r.payload.etag.empty());
    CHECK(proxy.stat("signature_failures") == 0);
    CHECK(proxy.stat("signatures_checked") == 1);

    const auto got = fetch(r.payload.url);
    CHECK(got.status == 200);
    CHECK(got.body == body);
    CHECK(got.content_type == "application/json");
    CHECK(proxy.stat("presigned_forwarded") == 1);
}

TEST_CASE("keys with spaces, unicode and reserved characters; a dotted bucket", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.prefix = "tenant 42/caf\xc3\xa9/a+b=c&d;e,f'g(h)!~*";
    config.key_template = "{prefix}/{uuid} final.json";
    outbox::PayloadStager stager(io.get_executor(), config);
    auto r = stage(io, stager, "odd key");
    REQUIRE_FALSE(r.ec);
    CHECK(r.payload.key.starts_with("tenant 42/caf\xc3\xa9/a+b=c&d;e,f'g(h)!~*/"));
    CHECK(r.payload.key.ends_with(" final.json"));
    CHECK(proxy.stat("signature_failures") == 0);
    CHECK(fetch(r.payload.url).body == "odd key");

    config.bucket = "other.bucket";
    outbox::PayloadStager dotted(io.get_executor(), config);
    auto d = stage(io, dotted, "dotted");
    REQUIRE_FALSE(d.ec);
    CHECK(fetch(d.payload.url).body == "dotted");
}

TEST_CASE("encryption, tags, content encoding: in the request and signed", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.encryption = outbox::ServerSideEncryption::sse_kms;
    config.kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd";
    config.tags = {{"outbox", "staged"}, {"expire after", "7 days"}};
    config.content_type = "application/octet-stream";
    config.content_encoding = "identity";
    outbox::PayloadStager stager(io.get_executor(), config);
    auto r = stage(io, stager, "tagged");
    REQUIRE_FALSE(r.ec);
    auto headers = proxy.last_headers();
    CHECK(headers["x-amz-server-side-encryption"] == "aws:kms");
    CHECK(headers["x-amz-server-side-encryption-aws-kms-key-id"] == config.kms_key_id);
    CHECK(headers["x-amz-tagging"] == "outbox=staged&expire%20after=7%20days");
    CHECK(headers["content-encoding"] == "identity");
    CHECK(headers["x-amz-content-sha256"] ==
          std::string(outbox::sigv4::payload_hash("tagged").view()));
    const std::string& auth = headers["authorization"];
    for (const char* h :
         {"content-encoding", "content-type", "x-amz-server-side-encryption", "x-amz-tagging",
          "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-content-sha256"})
        CHECK(auth.find(h) != std::string::npos);
    CHECK(proxy.stat("signature_failures") == 0);
    CHECK(fetch(r.payload.url).content_type == "application/octet-stream");
}

TEST_CASE("a 5 MiB binary payload round-trips byte for byte", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.content_type = "application/octet-stream";
    outbox::PayloadStager stager(io.get_executor(), config);
    std::string body(5 * 1024 * 1024, '\0');
    std::mt19937 rng(7);
    for (auto& c : body) c = static_cast<char>(rng());
    auto r = stage(io, stager, body);
    REQUIRE_FALSE(r.ec);
    const auto got = fetch(r.payload.url);
    CHECK(got.body.size() == body.size());
    CHECK(got.body == body);
}

TEST_CASE("a URL never outlives its credentials, and an expired URL is refused", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    outbox::Credentials temporary{"S3RVER", "S3RVER", "session-token",
                                  std::chrono::system_clock::now() + std::chrono::seconds(90)};
    config.credentials = outbox::make_static_credentials(io.get_executor(), temporary);
    outbox::PayloadStager short_lived(io.get_executor(), config);
    // The proxy checks the signature with the token included; s3rver ignores the token.
    auto r = stage(io, short_lived, "short");
    REQUIRE_FALSE(r.ec);
    CHECK(r.payload.expires_in <= std::chrono::seconds(90));
    CHECK(r.payload.expires_in >= std::chrono::seconds(85));
    CHECK(r.payload.url.find("X-Amz-Security-Token=session-token") != std::string::npos);

    // A URL of a minute works; one of a second, once the second has passed, is refused for
    // that reason. (Fetching the one-second URL before it expires would race the clock on a
    // loaded machine: under TSan it took longer than a second once.)
    config = stager_config(io, proxy);
    config.url_expires = std::chrono::seconds(60);
    outbox::PayloadStager one_minute(io.get_executor(), config);
    auto m = stage(io, one_minute, "lasts");
    REQUIRE_FALSE(m.ec);
    CHECK(fetch(m.payload.url).body == "lasts");
    config.url_expires = std::chrono::seconds(1);
    outbox::PayloadStager one_second(io.get_executor(), config);
    auto e = stage(io, one_second, "expires");
    REQUIRE_FALSE(e.ec);
    CHECK(e.payload.url.find("X-Amz-Expires=1&") != std::string::npos);
    // Expiry is about wall-clock time: let the URL's one second pass.
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    const auto expired = fetch(e.payload.url);
    CHECK(expired.status == 403);
    CHECK(expired.body.find("<Code>AccessDenied</Code>") != std::string::npos);
    CHECK(expired.body.find("expired") != std::string::npos);
}

TEST_CASE("S3 errors reach the diagnostics: NoSuchBucket, an unknown key, an unreachable server",
          "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.bucket = "no-such-bucket";
    outbox::PayloadStager missing(io.get_executor(), config);
    auto r = stage(io, missing, "x");
    CHECK(r.ec == outbox::Errc::service_error);
    CHECK(r.payload.diagnostics.code == "NoSuchBucket");
    CHECK(r.payload.diagnostics.http_status == 404);
    CHECK(r.payload.diagnostics.message == "The specified bucket does not exist");
    CHECK(r.payload.attempts == 1);  // client errors are not retried

    config = stager_config(io, proxy);
    config.endpoint = s3rver().url();  // straight to s3rver, which knows only the key S3RVER
    config.credentials =
        outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"AKIDUNKNOWN", "x"});
    outbox::PayloadStager unknown_key(io.get_executor(), config);
    auto w = stage(io, unknown_key, "x");
    CHECK(w.ec == outbox::Errc::service_error);
    CHECK(w.payload.diagnostics.code == "InvalidAccessKeyId");
    CHECK(w.payload.diagnostics.http_status == 403);
    CHECK(w.payload.attempts == 1);

    config = stager_config(io, proxy);
    config.endpoint = "http://127.0.0.1:1";
    config.retry.max_attempts = 2;
    outbox::PayloadStager nowhere(io.get_executor(), config);
    auto n = stage(io, nowhere, "x");
    CHECK(n.ec == boost::asio::error::connection_refused);
    CHECK(n.payload.attempts == 2);
}

TEST_CASE("a credentials provider that throws fails the staging with its reason", "[s3]") {
    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.credentials = std::make_shared<outbox::test::ThrowingCredentials>(io.get_executor(),
                                                                             "the vault is sealed");
    outbox::PayloadStager stager(io.get_executor(), config);
    for (int i = 0; i < 2; ++i) {  // and the stager is still there for the next
        auto r = stage(io, stager, "x");
        CHECK(r.ec == outbox::Errc::credentials_not_found);
        CHECK(r.payload.diagnostics.message ==
              "the credentials provider threw: the vault is sealed");
    }
    CHECK(proxy.stat("requests") == 0);
}

TEST_CASE("S3 faults on a seeded schedule: every stage succeeds after retries, every URL works",
          "[s3]") {
    Proxy proxy({"--faults", "500=0.15,503=0.1,throttle=0.1,reset=0.1,lost=0.1", "--seed", "2"});
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.retry.max_attempts = 20;
    outbox::PayloadStager stager(io.get_executor(), config);
    std::uint32_t retried = 0;
    for (int i = 0; i < 20; ++i) {
        auto r = stage(io, stager, "payload " + std::to_string(i));
        REQUIRE_FALSE(r.ec);
        retried += r.payload.attempts - 1;
        CHECK(fetch(r.payload.url).body == "payload " + std::to_string(i));
    }
    CHECK(retried > 0);
    simdjson::dom::parser parser;
    simdjson::dom::element stats =
        parser.parse(outbox::test::http_get(proxy.process.port(), "/__proxy/stats"));
    for (const char* kind : {"500", "503", "throttle", "reset", "lost"}) {
        INFO(kind);
        CHECK(std::uint64_t(stats["faults"][kind]) > 0);
    }
    CHECK(proxy.stat("signature_failures") == 0);
}

namespace {

// One environment variable for one test case, put back afterwards.
class ScopedVariable {
  public:
    ScopedVariable(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~ScopedVariable() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// Bodies of the sizes that matter to an 8-byte-at-a-time CRC: none, a tail only, one step, a
// step and a tail, and over a MiB.
std::vector<std::string> checksum_bodies() {
    std::mt19937 rng(7);
    std::vector<std::string> bodies;
    for (std::size_t size : {0u, 1u, 7u, 8u, 9u, 1000u, (1u << 20) + 3}) {
        std::string b(size, '\0');
        for (char& c : b) c = static_cast<char>(rng());
        bodies.push_back(std::move(b));
    }
    return bodies;
}

}  // namespace

TEST_CASE("every PutObject carries a checksum S3 verifies: CRC32 by default, or CRC64NVME",
          "[s3]") {
    ScopedVariable unset("AWS_REQUEST_CHECKSUM_CALCULATION", nullptr);
    ScopedVariable no_profile("AWS_CONFIG_FILE", "/nonexistent/outbox-test-config");
    for (auto checksum : {outbox::S3Checksum::automatic, outbox::S3Checksum::crc64nvme}) {
        Proxy proxy;  // verifies each checksum against the body, as S3 does (BadDigest if not)
        asio::io_context io;
        auto config = stager_config(io, proxy);
        config.checksum = checksum;
        outbox::PayloadStager stager(io.get_executor(), config);
        const bool crc32 = checksum == outbox::S3Checksum::automatic;
        CHECK(stager.config().checksum ==
              (crc32 ? outbox::S3Checksum::crc32 : outbox::S3Checksum::crc64nvme));
        const auto bodies = checksum_bodies();
        for (const auto& body : bodies) {
            INFO("body of " << body.size() << " bytes");
            auto r = stage(io, stager, body);
            REQUIRE_FALSE(r.ec);
            const auto headers = proxy.last_headers();
            CHECK(headers.contains(crc32 ? "x-amz-checksum-crc32" : "x-amz-checksum-crc64nvme"));
            CHECK(fetch(r.payload.url).body == body);
        }
        CHECK(proxy.stat("checksums_verified") == bodies.size());
        CHECK(proxy.stat("checksum_failures") == 0);
        CHECK(proxy.stat("signature_failures") == 0);
    }
}

TEST_CASE("checksums off: for stores that refuse the header, or as the SDKs' setting says",
          "[s3]") {
    ScopedVariable no_profile("AWS_CONFIG_FILE", "/nonexistent/outbox-test-config");
    Proxy refusing({"--refuse-checksums"});  // an S3-compatible store without checksums
    asio::io_context io;
    auto config = stager_config(io, refusing);
    config.checksum = outbox::S3Checksum::crc32;
    config.retry.max_attempts = 3;
    {
        outbox::PayloadStager stager(io.get_executor(), config);
        auto r = stage(io, stager, "refused");
        CHECK(r.ec == outbox::Errc::service_error);
        CHECK(r.payload.diagnostics.code == "InvalidArgument");
        CHECK(r.payload.attempts == 1);  // a refusal is not retried
    }
    config.checksum = outbox::S3Checksum::none;
    {
        outbox::PayloadStager stager(io.get_executor(), config);
        auto r = stage(io, stager, "no checksum");
        REQUIRE_FALSE(r.ec);
        CHECK_FALSE(refusing.last_headers().contains("x-amz-checksum-crc32"));
        CHECK(fetch(r.payload.url).body == "no checksum");
    }
    // The AWS SDKs' own switch: when_required sends none for PutObject.
    config.checksum = outbox::S3Checksum::automatic;
    {
        ScopedVariable env("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED");
        outbox::PayloadStager stager(io.get_executor(), config);
        CHECK(stager.config().checksum == outbox::S3Checksum::none);
        REQUIRE_FALSE(stage(io, stager, "as the SDKs do").ec);
    }
    {
        const fs::path file = fs::temp_directory_path() / "outbox-checksum-config";
        std::ofstream(file) << "[default]\nrequest_checksum_calculation = when_required\n";
        ScopedVariable unset("AWS_REQUEST_CHECKSUM_CALCULATION", nullptr);
        ScopedVariable profile("AWS_CONFIG_FILE", file.c_str());
        outbox::PayloadStager stager(io.get_executor(), config);
        CHECK(stager.config().checksum == outbox::S3Checksum::none);
        fs::remove(file);
    }
    {
        ScopedVariable env("AWS_REQUEST_CHECKSUM_CALCULATION", "sometimes");
        try {
            outbox::PayloadStager stager(io.get_executor(), config);
            FAIL("an unknown request_checksum_calculation was accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find("AWS_REQUEST_CHECKSUM_CALCULATION") !=
                  std::string::npos);
        }
    }
    CHECK(refusing.stat("checksums_verified") == 0);
}

TEST_CASE("a PUT whose reply was lost is retried without overwriting; the stage succeeds", "[s3]") {
    Proxy proxy;  // If-None-Match: * answered 412 when the key exists, as S3 does
    asio::io_context io;
    outbox::PayloadStager stager(io.get_executor(), stager_config(io, proxy));
    proxy.lose_next(1);  // stored upstream, the reply never comes
    const std::string body = R"({"order":"lost reply"})";
    auto r = stage(io, stager, body);
    REQUIRE_FALSE(r.ec);
    CHECK(r.payload.attempts == 2);
    CHECK(r.payload.stored_by_earlier_attempt);
    CHECK(proxy.stat("lost_replies") == 1);
    CHECK(proxy.stat("conditional_refusals") == 1);  // the retry did not overwrite
    CHECK(proxy.stat("forwarded") == 1);             // one PUT reached the store
    CHECK(proxy.last_headers().at("if-none-match") == "*");
    CHECK(fetch(r.payload.url).body == body);

    // S3 asks for a retry when conditional writes race: 409 ConditionalRequestConflict.
    proxy.conflict_next(1);
    r = stage(io, stager, "after a conflict");
    REQUIRE_FALSE(r.ec);
    CHECK(r.payload.attempts == 2);
    CHECK_FALSE(r.payload.stored_by_earlier_attempt);
    CHECK(proxy.stat("conflicts") == 1);
    CHECK(fetch(r.payload.url).body == "after a conflict");

    // A 412 is ours only after an attempt that may have stored the object. On the first
    // attempt, or after a definite refusal (409), the key is someone else's: an error.
    proxy.precondition_next(1);
    r = stage(io, stager, "key taken");
    CHECK(r.ec == outbox::Errc::service_error);
    CHECK(r.payload.attempts == 1);
    CHECK(r.payload.diagnostics.code == "PreconditionFailed");
    CHECK(r.payload.diagnostics.message.find("exists already") != std::string::npos);
    CHECK_FALSE(r.payload.stored_by_earlier_attempt);
    proxy.conflict_next(1);
    proxy.precondition_next(1);
    r = stage(io, stager, "refused, then taken");
    CHECK(r.ec == outbox::Errc::service_error);
    CHECK(r.payload.attempts == 2);
    CHECK_FALSE(r.payload.stored_by_earlier_attempt);
}

TEST_CASE("conditional writes off, for stores that refuse If-None-Match", "[s3]") {
    Proxy refusing({"--refuse-conditional-writes"});  // 501 NotImplemented, as such stores do
    asio::io_context io;
    auto config = stager_config(io, refusing);
    {
        outbox::PayloadStager stager(io.get_executor(), config);
        auto r = stage(io, stager, "refused");
        CHECK(r.ec == outbox::Errc::service_error);
        CHECK(r.payload.diagnostics.code == "NotImplemented");
        CHECK(r.payload.attempts == 1);
    }
    config.conditional_write = false;
    outbox::PayloadStager stager(io.get_executor(), config);
    auto r = stage(io, stager, "unconditional");
    REQUIRE_FALSE(r.ec);
    CHECK_FALSE(refusing.last_headers().contains("if-none-match"));
    CHECK(fetch(r.payload.url).body == "unconditional");
}

TEST_CASE("S3 refusing a request as signed at the wrong time: the clock is corrected once",
          "[s3]") {
    Proxy proxy({"--clock-offset", "900"});
    asio::io_context io;
    outbox::PayloadStager stager(io.get_executor(), stager_config(io, proxy));
    auto first = stage(io, stager, "skewed");
    REQUIRE_FALSE(first.ec);
    CHECK(first.payload.attempts == 2);
    CHECK(proxy.stat("skew_refusals") == 1);
    auto second = stage(io, stager, "corrected");
    REQUIRE_FALSE(second.ec);
    CHECK(second.payload.attempts == 1);
}

TEST_CASE("a stage cancelled while S3 is slow completes with operation_aborted", "[s3]") {
    Proxy proxy({"--faults", "slow=1.0", "--slow-ms", "3000"});
    asio::io_context io;
    outbox::PayloadStager stager(io.get_executor(), stager_config(io, proxy));
    asio::cancellation_signal cancel;
    std::optional<error_code> result;
    stager.async_stage("never mind", asio::bind_cancellation_slot(
                                         cancel.slot(), [&](error_code ec, outbox::StagedPayload) {
                                             result = ec;
                                         }));
    // Cancel once the upload is on the wire: the proxy has received it.
    while (proxy.stat("requests") == 0) io.run_for(std::chrono::milliseconds(20));
    cancel.emit(asio::cancellation_type::terminal);
    while (!result && io.run_one_for(std::chrono::seconds(10)) != 0) {
    }
    REQUIRE(result);
    CHECK(*result == asio::error::operation_aborted);
}

TEST_CASE("configuration that cannot work is refused at construction", "[s3]") {
    asio::io_context io;
    outbox::PayloadStagerConfig c;
    c.region = "eu-west-1";
    c.credentials =
        outbox::make_static_credentials(io.get_executor(), outbox::Credentials{"a", "b"});
    CHECK_THROWS_AS(outbox::PayloadStager(io.get_executor(), c),
                    std::invalid_argument);  // no bucket
    c.bucket = "Bad_Bucket";
    CHECK_THROWS_AS(outbox::PayloadStager(io.get_executor(), c), std::invalid_argument);
    c.bucket = "good-bucket";
    c.url_expires = std::chrono::seconds(604801);
    CHECK_THROWS_AS(outbox::PayloadStager(io.get_executor(), c), std::invalid_argument);
    c.url_expires = std::chrono::seconds(600);
    c.key_template = "{prefix}/fixed.json";
    CHECK_THROWS_AS(outbox::PayloadStager(io.get_executor(), c), std::invalid_argument);
    c.key_template = "{prefix}/{uuid}";
    CHECK_NOTHROW(outbox::PayloadStager(io.get_executor(), c));
}

TEST_CASE("SQS with a stager: bodies over the queue's 256 KiB staged, the rest inline",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue =
        create_queue("staging-threshold", R"({"MaximumMessageSize":"262144"})");
    auto c = sqs_config(io, queue, stager);
    outbox::SqsDestination sqs(io.get_executor(), c);

    const std::string large(300 * 1024, 'L');
    std::map<std::string, outbox::Receipt> receipts;
    std::size_t done = 0;
    for (std::string body : {std::string("small one"), large, std::string("small two")}) {
        outbox::Message m;
        m.body = body;
        sqs.async_send(std::move(m), [&, body](error_code ec, outbox::Receipt r) {
            CHECK_FALSE(ec);
            receipts[body.substr(0, 9)] = std::move(r);
            ++done;
        });
    }
    while (done < 3 && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(done == 3);
    CHECK(receipts["small one"].staged_url.empty());
    CHECK(receipts["small two"].staged_url.empty());
    const auto& staged = receipts[large.substr(0, 9)];
    REQUIRE_FALSE(staged.staged_url.empty());
    CHECK(staged.staged_key.starts_with("payloads/"));
    CHECK(sqs.stats().staged == 1);

    auto bodies = receive_bodies(queue, 3);
    REQUIRE(bodies.size() == 3);
    std::string envelope;
    for (auto& b : bodies)
        if (b.starts_with("{\"status\"")) envelope = b;
    CHECK(envelope == outbox::staged_payload_message(staged.staged_url, std::chrono::seconds(600)));
    CHECK(std::count(bodies.begin(), bodies.end(), "small one") == 1);
    // The consumer's side: follow the URL.
    CHECK(fetch(staged.staged_url).body == large);
}

TEST_CASE("SQS with stage-always and CloudEvents: every message is an event carrying a URL",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue = create_queue("staging-always", "{}");
    auto c = sqs_config(io, queue, stager);
    c.staging = outbox::StagingPolicy::always;
    c.envelope = outbox::Envelope::cloudevents;
    c.cloudevents.source = "urn:outbox:test";
    c.cloudevents.type = "com.example.order.created";
    outbox::SqsDestination sqs(io.get_executor(), c);

    outbox::Message m;
    m.body = std::string("binary \x01\x02 bytes are fine in S3", 30);
    std::optional<outbox::Receipt> receipt;
    sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt r) {
        CHECK_FALSE(ec);
        receipt = std::move(r);
    });
    while (!receipt && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(receipt);
    REQUIRE_FALSE(receipt->staged_url.empty());
    auto bodies = receive_bodies(queue, 1);
    REQUIRE(bodies.size() == 1);
    simdjson::dom::parser parser;
    simdjson::dom::object event = parser.parse(bodies[0]);
    CHECK(std::string_view(event["specversion"]) == "1.0");
    CHECK(std::string_view(event["source"]) == "urn:outbox:test");
    CHECK(std::string_view(event["type"]) == "com.example.order.created");
    CHECK(std::string_view(event["data"]["type"]) == "s3_payload");
    CHECK(std::string_view(event["data"]["url"]) == receipt->staged_url);
    CHECK(fetch(receipt->staged_url).body ==
          std::string("binary \x01\x02 bytes are fine in S3", 30));
}

TEST_CASE("a staged message whose upload reply was lost is delivered once, with one object",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue = create_queue("staging-lost-reply", "{}");
    auto c = sqs_config(io, queue, stager);
    c.staging = outbox::StagingPolicy::always;
    outbox::SqsDestination sqs(io.get_executor(), c);
    proxy.lose_next(1);  // the PutObject is stored; its reply never comes

    outbox::Message m;
    m.body = R"({"order":"staged once"})";
    std::optional<outbox::Receipt> receipt;
    sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt r) {
        CHECK_FALSE(ec);
        receipt = std::move(r);
    });
    while (!receipt && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(receipt);
    CHECK(proxy.stat("lost_replies") == 1);
    CHECK(proxy.stat("conditional_refusals") == 1);
    CHECK(proxy.stat("forwarded") == 1);  // one PutObject stored
    // Every message the queue holds: exactly one, pointing at that object.
    const auto bodies = outbox::test::drain_bodies(queue, 30);
    REQUIRE(bodies.size() == 1);
    simdjson::dom::parser parser;
    simdjson::dom::object envelope = parser.parse(bodies[0]);
    CHECK(std::string_view(envelope["url"]) == receipt->staged_url);
    CHECK(fetch(receipt->staged_url).body == R"({"order":"staged once"})");
}

TEST_CASE("Extended Client pointers, read back as the library reads them", "[s3][sqs]") {
    // Bodies under the queue's limit go inline, several to a batch whatever their total (the
    // Extended Client fails such batches); bodies over it go as pointers a consumer resolves
    // with its own credentials (botocore signs its GET).
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue =
        create_queue("staging-extended-client", R"({"MaximumMessageSize":"262144"})");
    auto c = sqs_config(io, queue, stager);
    c.envelope = outbox::Envelope::extended_client;
    outbox::SqsDestination sqs(io.get_executor(), c);

    std::vector<std::string> bodies;
    for (std::size_t size : {100u, 200u << 10, 200u << 10, 200u << 10, 200u << 10, 200u << 10,
                             300u << 10, 300u << 10, (1u << 20) + 1})
        bodies.push_back("{\"n\":" + std::to_string(bodies.size()) + ",\"fill\":\"" +
                         std::string(size, 'x') + "\"}");
    int done = 0;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        outbox::Message m;
        m.body = bodies[i];
        m.attributes.push_back({"index", "Number", std::to_string(i)});
        sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt) {
            CHECK_FALSE(ec);
            ++done;
        });
    }
    while (done < int(bodies.size()) && io.run_one_for(std::chrono::seconds(60)) != 0) {
    }
    REQUIRE(done == int(bodies.size()));

    const std::string received = outbox::test::receive_json(queue, bodies.size(), 30);
    simdjson::dom::parser parser;
    std::vector<std::size_t> order;  // the index attribute of each message, as received
    for (simdjson::dom::object m : parser.parse(received).get_array()) {
        order.push_back(
            std::stoul(std::string(std::string_view(m["attributes"]["index"]["value"]))));
        const auto i = order.back();
        const bool pointer = bodies[i].size() > 262144;
        CHECK((m["attributes"]["ExtendedPayloadSize"].error() == simdjson::SUCCESS) == pointer);
        if (pointer)
            CHECK(std::string_view(m["attributes"]["ExtendedPayloadSize"]["value"]) ==
                  std::to_string(bodies[i].size()));
    }
    REQUIRE(order.size() == bodies.size());
    std::string resolved;
    REQUIRE(
        outbox::test::run_command({"/usr/bin/python3", peers_dir() + "/extended_client_reader.py",
                                   "--s3-endpoint", s3rver().url()},
                                  resolved, received) == 0);
    simdjson::dom::parser reader_parser;
    simdjson::dom::array read = reader_parser.parse(resolved).get_array();
    REQUIRE(read.size() == bodies.size());
    std::size_t k = 0, pointers = 0;
    for (simdjson::dom::object r : read) {
        const auto i = order[k++];
        INFO("message " << i);
        CHECK(std::string_view(r["body"]) == bodies[i]);
        if (bool(r["pointer"])) ++pointers;
    }
    CHECK(pointers == 3);
    CHECK(proxy.stat("signature_failures") == 0);
}

TEST_CASE("Extended Client envelope: no stager, or no room for its attribute, is refused",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    const std::string queue = create_queue("staging-extended-refused", "{}");
    auto c = sqs_config(io, queue, nullptr);
    c.envelope = outbox::Envelope::extended_client;
    CHECK_THROWS_AS(outbox::SqsDestination(io.get_executor(), c), std::invalid_argument);
    c.stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    c.staging = outbox::StagingPolicy::always;
    outbox::SqsDestination sqs(io.get_executor(), c);
    outbox::Message m;
    m.body = "ten attributes already";
    for (int i = 0; i < 10; ++i) m.attributes.push_back({"a" + std::to_string(i), "String", "v"});
    std::optional<error_code> result;
    outbox::Receipt receipt;
    sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt r) {
        result = ec;
        receipt = std::move(r);
    });
    while (!result && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(result);
    CHECK(*result == outbox::Errc::invalid_message);
    CHECK(receipt.diagnostics.message.find("ExtendedPayloadSize") != std::string::npos);
    CHECK(proxy.stat("signatures_checked") == 0);  // refused before any upload

    // The size attribute's names are reserved on every message, staged or not: the
    // library's readers would take the body for a pointer.
    for (const char* reserved : {"ExtendedPayloadSize", "SQSLargePayloadSize"}) {
        outbox::Message inline_message;
        inline_message.body = "not a pointer";
        inline_message.attributes.push_back({reserved, "Number", "13"});
        result.reset();
        sqs.async_send(std::move(inline_message), [&](error_code ec, outbox::Receipt r) {
            result = ec;
            receipt = std::move(r);
        });
        while (!result && io.run_one_for(std::chrono::seconds(30)) != 0) {
        }
        REQUIRE(result);
        CHECK(*result == outbox::Errc::invalid_message);
        CHECK(receipt.diagnostics.message.find("reserved") != std::string::npos);
    }
    CHECK(proxy.stat("signatures_checked") == 0);
}

TEST_CASE("a link outlives its pre-signed URL: the link service redirects to a fresh one",
          "[s3][links]") {
    const std::vector<outbox::PayloadLinkKey> keys{{"k-2026-12", std::string(40, 's')}};
    // The service only checks links: it needs the keys, not its own address.
    asio::thread_pool service_thread(1);  // answers while this thread waits for curl
    outbox::PayloadLinkServiceConfig service_config;
    service_config.links = std::make_shared<const outbox::PayloadLinks>("", keys);
    service_config.region = "us-east-1";
    service_config.endpoint = s3rver().url();
    service_config.credentials = outbox::make_static_credentials(
        service_thread.get_executor(), outbox::Credentials{"S3RVER", "S3RVER"});
    outbox::PayloadLinkService service(service_thread.get_executor(), service_config);
    service.listen({asio::ip::make_address("127.0.0.1"), 0});
    const std::string base = "http://127.0.0.1:" + std::to_string(service.port());
    auto links = std::make_shared<const outbox::PayloadLinks>(base, keys);

    Proxy proxy;
    asio::io_context io;
    auto config = stager_config(io, proxy);
    config.url_expires = std::chrono::seconds(1);  // a consumer far behind
    config.links = links;
    auto stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), config);
    const std::string body = R"({"order":"read late"})";
    auto r = stage(io, *stager, body);
    REQUIRE_FALSE(r.ec);
    REQUIRE(r.payload.link.starts_with(base + "/p/outbox-staging/payloads/"));
    CHECK(r.payload.link.find("S3RVER") == std::string::npos);  // no credential in a link
    CHECK(r.payload.link.find(keys[0].secret) == std::string::npos);

    // Wait (polling, at most 20 s) until S3 refuses the pre-signed URL as expired.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (fetch(r.payload.url).status != 403 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    REQUIRE(fetch(r.payload.url).status == 403);
    // The link still yields the payload: 302 to a URL signed just now.
    const auto redirect = fetch(r.payload.link);
    CHECK(redirect.status == 302);
    std::string followed;
    REQUIRE(outbox::test::run_command({"curl", "-sfL", r.payload.link}, followed) == 0);
    CHECK(followed == body);

    // Refused: altered, expired, and what is not a link.
    std::string altered = r.payload.link;
    altered.back() = altered.back() == '0' ? '1' : '0';
    CHECK(fetch(altered).status == 403);
    const std::string expired =
        links->link(r.payload.bucket, r.payload.key,
                    std::chrono::system_clock::now() - std::chrono::seconds(1));
    CHECK(fetch(expired).status == 410);
    const outbox::PayloadLinks other_key(base, {{"k-2026-12", std::string(40, 'x')}});
    CHECK(fetch(other_key.link(r.payload.bucket, r.payload.key,
                               std::chrono::system_clock::now() + std::chrono::hours(1)))
              .status == 403);
    CHECK(fetch(base + "/metrics").status == 404);
    auto status_of = [](std::vector<std::string> curl) {
        std::string code;
        curl.insert(curl.begin() + 1, {"-s", "-o", "/dev/null", "-w", "%{http_code}"});
        REQUIRE(outbox::test::run_command(curl, code) == 0);
        return code;
    };
    CHECK(status_of({"curl", "-X", "POST", r.payload.link}) == "405");
    CHECK(status_of({"curl", altered}) == "403");  // altered and (below) expired: 403 first
    // HEAD: the redirect is signed for HEAD, so following it works too.
    CHECK(status_of({"curl", "-I", r.payload.link}) == "302");
    CHECK(status_of({"curl", "-I", "-L", r.payload.link}) == "200");

    // The staged-payload message carries the link as a fifth field.
    const std::string queue = create_queue("staging-links", "{}");
    auto c = sqs_config(io, queue, stager);
    c.staging = outbox::StagingPolicy::always;
    {
        outbox::SqsDestination sqs(io.get_executor(), c);
        outbox::Message m;
        m.body = "through the queue";
        std::optional<error_code> sent;
        sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt) { sent = ec; });
        while (!sent && io.run_one_for(std::chrono::seconds(30)) != 0) {
        }
        REQUIRE(sent);
        REQUIRE_FALSE(*sent);
    }
    const auto bodies = receive_bodies(queue, 1);
    REQUIRE(bodies.size() == 1);
    simdjson::dom::parser parser;
    simdjson::dom::object envelope = parser.parse(bodies[0]);
    CHECK(std::string_view(envelope["type"]) == "s3_payload");
    const std::string link{std::string_view(envelope["link"])};
    std::string via_link;
    REQUIRE(outbox::test::run_command({"curl", "-sfL", link}, via_link) == 0);
    CHECK(via_link == "through the queue");
    service.stop();
    service_thread.join();
}

TEST_CASE("a valid link while the service has no credentials: 503, to be tried again",
          "[s3][links]") {
    const std::vector<outbox::PayloadLinkKey> keys{{"k-1", std::string(40, 's')}};
    asio::thread_pool service_thread(1);
    outbox::PayloadLinkServiceConfig config;
    config.links = std::make_shared<const outbox::PayloadLinks>("", keys);
    config.region = "us-east-1";
    config.endpoint = s3rver().url();
    const bool throws = GENERATE(false, true);
    INFO((throws ? "a provider that throws" : "a provider without keys"));
    if (throws)
        config.credentials = std::make_shared<outbox::test::ThrowingCredentials>(
            service_thread.get_executor(), "the vault is sealed");
    else  // no keys: every fetch fails with missing_credentials
        config.credentials =
            outbox::make_static_credentials(service_thread.get_executor(), outbox::Credentials{});
    std::string logged;
    std::mutex log_mutex;
    config.logger =
        outbox::Logger{outbox::LogLevel::error, [&](outbox::LogLevel, std::string_view text) {
                           std::lock_guard lock(log_mutex);
                           logged += text;
                       }};
    outbox::PayloadLinkService service(service_thread.get_executor(), config);
    service.listen({asio::ip::make_address("127.0.0.1"), 0});
    const outbox::PayloadLinks links("http://127.0.0.1:" + std::to_string(service.port()), keys);
    const std::string link = links.link("outbox-staging", "payloads/missing-credentials",
                                        std::chrono::system_clock::now() + std::chrono::hours(1));
    const auto got = fetch(link);
    CHECK(got.status == 503);
    CHECK(got.body.find("cannot be reached") != std::string::npos);
    service.stop();
    service_thread.join();
    std::lock_guard lock(log_mutex);
    CHECK(logged.find("no URL for a valid link") != std::string::npos);
    if (throws)
        CHECK(logged.find("links: the credentials provider threw: the vault is sealed") !=
              std::string::npos);
}

TEST_CASE("FIFO order holds when some messages of a group are staged and others are not",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue = create_queue(
        "staging-order.fifo",
        R"({"FifoQueue":"true","ContentBasedDeduplication":"true","MaximumMessageSize":"262144"})");
    auto c = sqs_config(io, queue, stager);
    outbox::SqsDestination sqs(io.get_executor(), c);

    std::size_t done = 0;
    for (int i = 0; i < 6; ++i) {
        outbox::Message m;
        m.group_id = "g";
        // Even positions are large (staged, slower), odd ones small (inline, faster).
        m.body = i % 2 == 0 ? std::to_string(i) + std::string(280 * 1024, 'L')
                            : std::to_string(i) + " small";
        sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt) {
            CHECK_FALSE(ec);
            ++done;
        });
    }
    while (done < 6 && io.run_one_for(std::chrono::seconds(30)) != 0) {
    }
    REQUIRE(done == 6);
    CHECK(sqs.stats().staged == 3);
    auto bodies = receive_bodies(queue, 6);
    REQUIRE(bodies.size() == 6);
    for (int i = 0; i < 6; ++i) {
        INFO("position " << i);
        if (i % 2 == 1)
            CHECK(bodies[i] == std::to_string(i) + " small");
        else {
            simdjson::dom::parser parser;
            simdjson::dom::object envelope = parser.parse(bodies[i]);
            CHECK(std::string_view(envelope["type"]) == "s3_payload");
            CHECK(fetch(std::string(std::string_view(envelope["url"])))
                      .body.starts_with(std::to_string(i) + "L"));
        }
    }
}

TEST_CASE("closing a destination lets run() return: the stager's idle connections go too",
          "[s3][sqs]") {
    Proxy proxy;
    asio::io_context io;
    auto stager =
        std::make_shared<outbox::PayloadStager>(io.get_executor(), stager_config(io, proxy));
    const std::string queue = create_queue("staging-close");
    auto c = sqs_config(io, queue, stager);
    c.staging = outbox::StagingPolicy::always;
    outbox::SqsDestination sqs(io.get_executor(), c);
    outbox::Message m;
    m.body = "staged then closed";
    error_code sent = asio::error::would_block, closed = asio::error::would_block;
    sqs.async_send(std::move(m), [&](error_code ec, outbox::Receipt) {
        sent = ec;
        sqs.async_close(std::chrono::seconds(5), [&](error_code cec) { closed = cec; });
    });
    const auto start = std::chrono::steady_clock::now();
    io.run();  // returns once nothing is left: no idle connection holds it for 15 s
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    CHECK_FALSE(sent);
    CHECK_FALSE(closed);
    CHECK(receive_bodies(queue, 1).size() == 1);
}
