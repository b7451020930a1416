// Credentials providers against local servers answering as the AWS documentation
// describes the container, instance metadata and STS endpoints, plus broken answers.
#include <outbox/credentials_providers.hpp>

#include "catch.hpp"
#include "test_http_server.hpp"
#include "throwing_credentials.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <sys/stat.h>

using namespace outbox;
using outbox::test::TestHttpServer;
using outbox::test::TestReply;
using outbox::test::TestRequest;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Sets environment variables for one test and puts the old values back afterwards.
class ScopedEnv {
  public:
    ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
        // Every variable a provider reads starts unset, so the host's own never leak in.
        for (const char* name : {"AWS_ACCESS_KEY_ID",
                                 "AWS_SECRET_ACCESS_KEY",
                                 "AWS_SESSION_TOKEN",
                                 "AWS_PROFILE",
                                 "AWS_SHARED_CREDENTIALS_FILE",
                                 "AWS_CONFIG_FILE",
                                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                 "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                 "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                 "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                 "AWS_WEB_IDENTITY_TOKEN_FILE",
                                 "AWS_ROLE_ARN",
                                 "AWS_ROLE_SESSION_NAME",
                                 "AWS_ENDPOINT_URL_STS",
                                 "AWS_ENDPOINT_URL",
                                 "AWS_REGION",
                                 "AWS_DEFAULT_REGION",
                                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                                 "HOME"})
            set(name, nullptr);
        set("AWS_EC2_METADATA_DISABLED", "true");
        for (const auto& [name, value] : vars) set(name, value);
    }
    ~ScopedEnv() {
        for (const auto& [name, value] : saved_) {
            if (value)
                ::setenv(name.c_str(), value->c_str(), 1);
            else
                ::unsetenv(name.c_str());
        }
    }

  private:
    void set(const char* name, const char* value) {
        if (!saved_.contains(name)) {
            const char* old = std::getenv(name);
            saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
        }
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    std::map<std::string, std::optional<std::string>> saved_;
};

struct Got {
    boost::system::error_code ec;
    Credentials credentials;
};

Got get(asio::io_context& io, CredentialsProvider& p) {
    std::optional<Got> out;
    p.async_get_credentials([&](boost::system::error_code ec, Credentials c) {
        out = Got{ec, std::move(c)};
    });
    io.restart();
    while (!out && io.run_one()) {
    }
    REQUIRE(out);
    return std::move(*out);
}

// A temporary folder removed at the end of the test.
struct TempDir {
    fs::path path = fs::temp_directory_path() / ("outbox-creds-" + std::to_string(::getpid()) +
                                                 "-" + std::to_string(counter()++));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name) << text;
        return (path / name).string();
    }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

const std::string credentials_json =
    R"({"AccessKeyId":"ASIACONTAINER","SecretAccessKey":"container-secret","Token":"container-token",)"
    R"("Expiration":"2099-01-01T00:00:00Z"})";

TestReply json(unsigned status, std::string body) {
    TestReply r;
    r.status = status;
    r.headers = {{"Content-Type", "application/json"}};
    r.body = std::move(body);
    return r;
}

// A capturing logger, to check that secrets never reach it.
struct LogCapture {
    std::string text;
    Logger logger() {
        return {LogLevel::debug, [this](LogLevel, std::string_view m) {
                    text += m;
                    text += '\n';
                }};
    }
};

}  // namespace

TEST_CASE("static credentials") {
    asio::io_context io;
    auto p = make_static_credentials(io.get_executor(), {"AK", "SK", "TOKEN", {}});
    auto got = get(io, *p);
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.session_token == "TOKEN");
    CHECK(get(io, *make_static_credentials(io.get_executor(), {})).ec == Errc::missing_credentials);

    // At hand too, into credentials that held others: every field replaced.
    Credentials at_hand{"OLD", "OLDSECRET", "", std::chrono::system_clock::now()};
    REQUIRE(p->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AK");
    CHECK(at_hand.secret_access_key == "SK");
    CHECK(at_hand.session_token == "TOKEN");
    CHECK_FALSE(at_hand.expiration);
    CHECK_FALSE(make_static_credentials(io.get_executor(), {})->credentials_at_hand(at_hand));
}

TEST_CASE("rotatable credentials: at hand, the keys of the last rotation") {
    asio::io_context io;
    auto p = make_rotatable_credentials(io.get_executor(), {"AK1", "SK1", {}, {}});
    Credentials at_hand;
    REQUIRE(p->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AK1");
    p->rotate({"AK2", "SK2", "T2", {}});
    REQUIRE(p->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AK2");
    CHECK(at_hand.session_token == "T2");
    CHECK(get(io, *p).credentials.access_key_id == "AK2");
    p->rotate({});
    CHECK_FALSE(p->credentials_at_hand(at_hand));
    CHECK(get(io, *p).ec == Errc::missing_credentials);
}

TEST_CASE("environment credentials") {
    asio::io_context io;
    auto p = make_environment_credentials(io.get_executor());
    {
        ScopedEnv env{{"AWS_ACCESS_KEY_ID", "AKENV"},
                      {"AWS_SECRET_ACCESS_KEY", "SKENV"},
                      {"AWS_SESSION_TOKEN", "TKENV"}};
        auto got = get(io, *p);
        REQUIRE_FALSE(got.ec);
        CHECK(got.credentials.access_key_id == "AKENV");
        CHECK(got.credentials.secret_access_key == "SKENV");
        CHECK(got.credentials.session_token == "TKENV");
        Credentials at_hand;
        REQUIRE(p->credentials_at_hand(at_hand));
        CHECK(at_hand.access_key_id == "AKENV");
        CHECK(at_hand.secret_access_key == "SKENV");
        CHECK(at_hand.session_token == "TKENV");
    }
    {
        ScopedEnv env{{"AWS_ACCESS_KEY_ID", "AKENV2"}, {"AWS_SECRET_ACCESS_KEY", "SKENV2"}};
        Credentials at_hand{"AK", "SK", "A TOKEN NO LONGER SET", {}};
        REQUIRE(p->credentials_at_hand(at_hand));  // read again: the variables changed
        CHECK(at_hand.access_key_id == "AKENV2");
        CHECK(at_hand.session_token.empty());
    }
    {
        ScopedEnv env{};
        CHECK(get(io, *p).ec == Errc::credentials_not_found);
        Credentials at_hand;
        CHECK_FALSE(p->credentials_at_hand(at_hand));
    }
    {
        ScopedEnv env{{"AWS_ACCESS_KEY_ID", "AKENV"}};
        CHECK(get(io, *p).ec == Errc::missing_credentials);
        Credentials at_hand;
        CHECK_FALSE(p->credentials_at_hand(at_hand));
    }
}

TEST_CASE("profile files: credentials file first, config file, AWS_PROFILE, unsupported sources") {
    TempDir dir;
    const auto creds =
        dir.write("credentials",
                  "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = SKDEFAULT\n"
                  "[dev]\naws_access_key_id=AKDEV\naws_secret_access_key=SKDEV\n"
                  "aws_session_token=TKDEV\n");
    const auto config =
        dir.write("config",
                  "[default]\nregion = eu-west-1\n"
                  "[profile cfg]\naws_access_key_id = AKCFG\naws_secret_access_key = SKCFG\n"
                  "[profile dev]\naws_access_key_id = SHADOWED\naws_secret_access_key = X\n"
                  "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\n"
                  "source_profile = default\n");
    asio::io_context io;
    ScopedEnv env{{"AWS_SHARED_CREDENTIALS_FILE", creds.c_str()},
                  {"AWS_CONFIG_FILE", config.c_str()}};
    auto got = get(io, *make_profile_credentials(io.get_executor()));
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKDEFAULT");

    ::setenv("AWS_PROFILE", "dev", 1);
    got = get(io, *make_profile_credentials(io.get_executor()));
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKDEV");  // the credentials file wins over config
    CHECK(got.credentials.session_token == "TKDEV");

    got = get(io, *make_profile_credentials(io.get_executor(), {.profile = "cfg"}));
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKCFG");

    CHECK(get(io, *make_profile_credentials(io.get_executor(), {.profile = "role"})).ec ==
          Errc::unsupported_profile);
    CHECK(get(io, *make_profile_credentials(io.get_executor(), {.profile = "nope"})).ec ==
          Errc::credentials_not_found);
    CHECK(get(io, *make_profile_credentials(io.get_executor(), {.credentials_file = "/nonexistent",
                                                                .config_file = "/nonexistent"}))
              .ec == Errc::credentials_not_found);
}

TEST_CASE("container credentials: relative URI, full URI with a token file, errors") {
    TestHttpServer server([](const TestRequest& r) {
        if (r.target != "/v2/credentials/task-1") return json(404, "{}");
        if (r.header("Authorization") != "Bearer pod-token")
            return json(401, R"({"message":"unauthorised"})");
        return json(200, credentials_json);
    });
    TempDir dir;
    const auto token_file = dir.write("token", "Bearer pod-token\n");
    asio::io_context io;
    LogCapture log;

    SECTION("relative URI and a token in the environment") {
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task-1"},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token"}};
        auto p = make_container_credentials(io.get_executor(),
                                            {.endpoint = server.url(""), .logger = log.logger()});
        auto got = get(io, *p);
        REQUIRE_FALSE(got.ec);
        CHECK(got.credentials.access_key_id == "ASIACONTAINER");
        CHECK(got.credentials.session_token == "container-token");
        CHECK(got.credentials.expiration);
    }
    SECTION("full URI and the token file, which wins over the variable") {
        const std::string url = server.url("/v2/credentials/task-1");
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", url.c_str()},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.c_str()},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong"}};
        auto got = get(io, *make_container_credentials(io.get_executor()));
        REQUIRE_FALSE(got.ec);
        CHECK(got.credentials.secret_access_key == "container-secret");
    }
    SECTION("a wrong token is an endpoint error; no secret reaches the log") {
        const std::string url = server.url("/v2/credentials/task-1");
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", url.c_str()},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong-secret-token"}};
        auto got =
            get(io, *make_container_credentials(io.get_executor(), {.logger = log.logger()}));
        CHECK(got.ec == Errc::credentials_endpoint_error);
        CHECK(log.text.find("401") != std::string::npos);
        CHECK(log.text.find("wrong-secret-token") == std::string::npos);
    }
    SECTION("plain http off this machine is refused before any request") {
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.99/creds"}};
        CHECK(
            get(io, *make_container_credentials(io.get_executor(), {.logger = log.logger()})).ec ==
            Errc::invalid_url);
    }
    SECTION("a host that only starts like a loopback address is not one") {
        // Boost.URL 1.81 alone reads this as 127.0.0.1 with the path ".evil.example:PORT/...".
        const std::string url = "http://127.0.0.1.evil.example:" + std::to_string(server.port()) +
                                "/v2/credentials/task-1";
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", url.c_str()},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token"}};
        CHECK(get(io, *make_container_credentials(io.get_executor())).ec == Errc::invalid_url);
        CHECK(server.requests() == 0);
    }
    SECTION("a token file that is not a regular file is refused, named, and never read") {
        const std::string url = server.url("/v2/credentials/task-1");
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", url.c_str()},
                      {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/dev/zero"}};
        CHECK(
            get(io, *make_container_credentials(io.get_executor(), {.logger = log.logger()})).ec ==
            Errc::invalid_argument);
        CHECK(log.text.find("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE /dev/zero: it is "
                            "not a regular file") != std::string::npos);
        CHECK(server.requests() == 0);
    }
    SECTION("nothing configured: not found") {
        ScopedEnv env{};
        CHECK(get(io, *make_container_credentials(io.get_executor())).ec ==
              Errc::credentials_not_found);
    }
}

TEST_CASE("container credentials: malformed and slow answers") {
    TestHttpServer server([](const TestRequest& r) {
        if (r.target == "/slow") {
            TestReply reply = json(200, credentials_json);
            reply.delay = 800ms;
            return reply;
        }
        if (r.target == "/expired-shape")
            return json(200, R"({"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"x"})");
        return json(200, "<html>captive portal</html>");
    });
    asio::io_context io;
    for (const auto& [path, expected] :
         std::vector<std::pair<std::string, boost::system::error_code>>{
             {"/garbage", Errc::invalid_credentials_response},
             {"/expired-shape", Errc::invalid_credentials_response},
             {"/slow", Errc::outcome_unknown}}) {
        CAPTURE(path);
        const std::string url = server.url(path);
        ScopedEnv env{{"AWS_CONTAINER_CREDENTIALS_FULL_URI", url.c_str()}};
        auto p = make_container_credentials(io.get_executor(), {.timeout = 200ms});
        CHECK(get(io, *p).ec == expected);
    }
}

TEST_CASE("instance metadata (IMDSv2): token, role, credentials") {
    TestHttpServer imds([](const TestRequest& r) {
        if (r.method == "PUT" && r.target == "/latest/api/token") {
            if (r.header("X-aws-ec2-metadata-token-ttl-seconds").empty()) return json(400, "");
            return json(200, "IMDS-SESSION-TOKEN");
        }
        if (r.header("X-aws-ec2-metadata-token") != "IMDS-SESSION-TOKEN") return json(401, "");
        if (r.target == "/latest/meta-data/iam/security-credentials/")
            return json(200, "my-instance-role\n");
        if (r.target == "/latest/meta-data/iam/security-credentials/my-instance-role")
            return json(
                200,
                R"({"Code":"Success","LastUpdated":"2026-11-22T10:00:00Z","Type":"AWS-HMAC",)"
                R"("AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token",)"
                R"("Expiration":"2099-01-01T00:00:00Z"})");
        return json(404, "");
    });
    asio::io_context io;
    ScopedEnv env{{"AWS_EC2_METADATA_DISABLED", "false"}};
    auto p = make_instance_metadata_credentials(io.get_executor(), {.endpoint = imds.url("")});
    auto got = get(io, *p);
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "ASIAIMDS");
    CHECK(got.credentials.session_token == "imds-token");
    const auto seen = imds.received();
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].method == "PUT");
    CHECK(seen[0].header("X-aws-ec2-metadata-token-ttl-seconds") == "21600");
    CHECK(seen[1].target == "/latest/meta-data/iam/security-credentials/");
    // The session token is reused: a second fetch makes no new PUT.
    REQUIRE_FALSE(get(io, *p).ec);
    CHECK(imds.requests() == 5);
}

TEST_CASE("instance metadata: a session token the service no longer accepts is replaced") {
    // Each PUT issues a new token and only the newest is accepted, as after IMDS restarts.
    std::atomic<int> issued{0};
    TestHttpServer imds([&issued](const TestRequest& r) {
        if (r.method == "PUT") return json(200, "TOKEN-" + std::to_string(++issued));
        if (r.header("X-aws-ec2-metadata-token") != "TOKEN-" + std::to_string(issued.load()))
            return json(401, "");
        if (r.target == "/latest/meta-data/iam/security-credentials/") return json(200, "role");
        return json(
            200,
            R"({"Code":"Success","AccessKeyId":"ASIAROTATED","SecretAccessKey":"s","Token":"t",)"
            R"("Expiration":"2099-01-01T00:00:00Z"})");
    });
    asio::io_context io;
    ScopedEnv env{{"AWS_EC2_METADATA_DISABLED", "false"}};
    auto p = make_instance_metadata_credentials(io.get_executor(), {.endpoint = imds.url("")});
    REQUIRE_FALSE(get(io, *p).ec);
    CHECK(issued == 1);
    ++issued;  // the service forgets TOKEN-1
    auto got = get(io, *p);
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "ASIAROTATED");
    CHECK(issued == 3);  // a 401 with the old token, then a new PUT
    const auto seen = imds.received();
    CHECK(seen[3].header("X-aws-ec2-metadata-token") == "TOKEN-1");
    CHECK(seen[4].method == "PUT");
}

TEST_CASE("instance metadata: disabled, absent, or no role attached") {
    asio::io_context io;
    TestHttpServer no_role([](const TestRequest& r) {
        if (r.method == "PUT") return json(200, "T");
        return json(404, "");
    });
    {
        ScopedEnv env{{"AWS_EC2_METADATA_DISABLED", "TRUE"}};
        CHECK(get(io, *make_instance_metadata_credentials(io.get_executor(),
                                                          {.endpoint = no_role.url("")}))
                  .ec == Errc::credentials_not_found);
        CHECK(no_role.requests() == 0);
    }
    ScopedEnv env{{"AWS_EC2_METADATA_DISABLED", "false"}};
    CHECK(get(io,
              *make_instance_metadata_credentials(io.get_executor(), {.endpoint = no_role.url("")}))
              .ec == Errc::credentials_not_found);
    std::uint16_t closed_port;
    {
        TestHttpServer gone([](const TestRequest&) { return json(200, ""); });
        closed_port = gone.port();
    }
    const auto started = std::chrono::steady_clock::now();
    CHECK(get(io, *make_instance_metadata_credentials(
                      io.get_executor(),
                      {.endpoint = "http://127.0.0.1:" + std::to_string(closed_port)}))
              .ec == Errc::credentials_not_found);
    CHECK(std::chrono::steady_clock::now() - started < 1s);  // nothing listening: fails at once
}

TEST_CASE("web identity: STS AssumeRoleWithWebIdentity with the token file") {
    TestHttpServer sts([](const TestRequest& r) {
        TestReply reply;
        reply.headers = {{"Content-Type", "text/xml"}};
        if (r.method != "POST" ||
            r.body.find("Action=AssumeRoleWithWebIdentity") == std::string::npos ||
            r.body.find("WebIdentityToken=eyJ.token.sig") == std::string::npos ||
            r.body.find("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp") ==
                std::string::npos) {
            reply.status = 400;
            reply.body =
                "<ErrorResponse><Error><Code>InvalidParameter</Code><Message>bad</Message></"
                "Error></ErrorResponse>";
            return reply;
        }
        if (r.body.find("RoleSessionName=denied") != std::string::npos) {
            reply.status = 403;
            reply.body =
                "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to perform "
                "sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>";
            return reply;
        }
        reply.body =
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<SessionToken>sts-token</SessionToken><SecretAccessKey>sts-secret</SecretAccessKey>"
            "<Expiration>2099-01-01T00:00:00Z</Expiration><AccessKeyId>ASIASTS</AccessKeyId>"
            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        return reply;
    });
    TempDir dir;
    const auto token_file = dir.write("token", "eyJ.token.sig\n");
    asio::io_context io;
    const std::string endpoint = sts.url("/");
    ScopedEnv env{{"AWS_WEB_IDENTITY_TOKEN_FILE", token_file.c_str()},
                  {"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"},
                  {"AWS_ROLE_SESSION_NAME", "outbox-test"},
                  {"AWS_ENDPOINT_URL_STS", endpoint.c_str()}};
    auto got = get(io, *make_web_identity_credentials(io.get_executor()));
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "ASIASTS");
    CHECK(got.credentials.session_token == "sts-token");
    CHECK(
        sts.received()[0].header("Content-Type").starts_with("application/x-www-form-urlencoded"));

    ::setenv("AWS_ROLE_SESSION_NAME", "denied", 1);
    LogCapture log;
    WebIdentityOptions options;
    options.http.logger = log.logger();
    CHECK(get(io, *make_web_identity_credentials(io.get_executor(), options)).ec ==
          Errc::credentials_endpoint_error);
    CHECK(log.text.find("AccessDenied: Not authorized") != std::string::npos);
    CHECK(log.text.find("eyJ.token.sig") == std::string::npos);

    ::unsetenv("AWS_ROLE_ARN");
    CHECK(get(io, *make_web_identity_credentials(io.get_executor())).ec ==
          Errc::credentials_not_found);
}

TEST_CASE("web identity: the token never crosses the network in the clear; AWS_ENDPOINT_URL") {
    TestHttpServer sts([](const TestRequest&) {
        TestReply reply;
        reply.body =
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<SessionToken>t</SessionToken><SecretAccessKey>s</SecretAccessKey>"
            "<Expiration>2099-01-01T00:00:00Z</Expiration><AccessKeyId>ASIAGENERIC</AccessKeyId>"
            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        return reply;
    });
    TempDir dir;
    const auto token_file = dir.write("token", "eyJ.token.sig\n");
    asio::io_context io;
    LogCapture log;
    WebIdentityOptions options;
    options.http.logger = log.logger();
    SECTION("plain http to another machine: refused before connecting") {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there, and nothing is asked.
        ScopedEnv env{{"AWS_WEB_IDENTITY_TOKEN_FILE", token_file.c_str()},
                      {"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"},
                      {"AWS_ENDPOINT_URL_STS", "http://192.0.2.10/"}};
        const auto start = std::chrono::steady_clock::now();
        CHECK(get(io, *make_web_identity_credentials(io.get_executor(), options)).ec ==
              Errc::invalid_url);
        CHECK(std::chrono::steady_clock::now() - start < 1s);  // no connection was tried
        CHECK(log.text.find("must be https, or http to a loopback address") != std::string::npos);
    }
    SECTION("AWS_ENDPOINT_URL when no STS-specific endpoint is set") {
        const std::string endpoint = sts.url("/");
        ScopedEnv env{{"AWS_WEB_IDENTITY_TOKEN_FILE", token_file.c_str()},
                      {"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"},
                      {"AWS_ENDPOINT_URL", endpoint.c_str()}};
        auto got = get(io, *make_web_identity_credentials(io.get_executor(), options));
        REQUIRE_FALSE(got.ec);
        CHECK(got.credentials.access_key_id == "ASIAGENERIC");
    }
    SECTION("a token file that is a FIFO is refused without waiting for a writer") {
        const std::string fifo = (dir.path / "fifo").string();
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        const std::string endpoint = sts.url("/");
        ScopedEnv env{{"AWS_WEB_IDENTITY_TOKEN_FILE", fifo.c_str()},
                      {"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"},
                      {"AWS_ENDPOINT_URL_STS", endpoint.c_str()}};
        CHECK(get(io, *make_web_identity_credentials(io.get_executor(), options)).ec ==
              Errc::invalid_argument);
        CHECK(log.text.find("it is not a regular file") != std::string::npos);
        CHECK(sts.requests() == 0);
    }
}

TEST_CASE("profile files that are not small regular files are refused and named") {
    TempDir dir;
    const std::string big = dir.write("big", "[default]\n");
    fs::resize_file(big, 2 * 1024 * 1024);
    asio::io_context io;
    for (const auto& [file, says] : std::vector<std::pair<std::string, std::string>>{
             {"/dev/zero", "it is not a regular file"},
             {dir.path.string(), "it is a directory"},
             {big, "it is larger than 1048576 bytes"}}) {
        CAPTURE(file);
        LogCapture log;
        ScopedEnv env{{"AWS_SHARED_CREDENTIALS_FILE", file.c_str()},
                      {"AWS_CONFIG_FILE", "/nonexistent"}};
        auto p = make_profile_credentials(io.get_executor(), {.logger = log.logger()});
        CHECK(get(io, *p).ec == Errc::unreadable_profile_file);
        CHECK(log.text.find("cannot read the AWS profile file " + file + ": " + says) !=
              std::string::npos);
    }
}

TEST_CASE("the default chain's name lists the sources it tries") {
    ScopedEnv env{};
    asio::io_context io;
    CHECK(make_default_credentials(io.get_executor())->name() ==
          "environment, web identity, profile \"default\", container, instance metadata");
}

namespace {

// A provider that counts calls and answers from a script, for the chain and cache tests.
class ScriptedProvider final : public CredentialsProvider {
  public:
    ScriptedProvider(asio::any_io_executor ex, std::string name)
        : ex_(std::move(ex)), name_(std::move(name)) {}
    std::string name() const override { return name_; }
    int calls = 0;
    boost::system::error_code next_error{};
    Credentials next{};

  protected:
    void do_get_credentials(Handler h) override {
        ++calls;
        asio::post(ex_, asio::append(std::move(h), next_error, next));
    }

  private:
    asio::any_io_executor ex_;
    std::string name_;
};

}  // namespace

TEST_CASE("chain: first provider with credentials wins, and is asked first next time") {
    asio::io_context io;
    auto a = std::make_shared<ScriptedProvider>(io.get_executor(), "a");
    auto b = std::make_shared<ScriptedProvider>(io.get_executor(), "b");
    auto c = std::make_shared<ScriptedProvider>(io.get_executor(), "c");
    a->next_error = Errc::credentials_not_found;
    b->next = {"AKB", "SKB", {}, {}};
    c->next = {"AKC", "SKC", {}, {}};
    auto chain = make_credentials_chain(io.get_executor(), {a, b, c});
    auto got = get(io, *chain);
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKB");
    CHECK(a->calls == 1);
    CHECK(c->calls == 0);
    REQUIRE_FALSE(get(io, *chain).ec);
    CHECK(a->calls == 1);  // b went first this time
    CHECK(b->calls == 2);

    b->next_error =
        Errc::credentials_not_found;  // b stops working: the round goes on with c, then a
    got = get(io, *chain);
    REQUIRE_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKC");

    c->next_error = Errc::credentials_endpoint_error;
    a->next_error = Errc::credentials_not_found;
    CHECK(get(io, *chain).ec ==
          Errc::credentials_endpoint_error);  // the informative error, not "not found"
    c->next_error = Errc::credentials_not_found;
    CHECK(get(io, *chain).ec == Errc::credentials_not_found);
    CHECK(get(io, *make_credentials_chain(io.get_executor(), {})).ec ==
          Errc::credentials_not_found);
}

TEST_CASE("chain: at hand, what the provider that worked last holds") {
    ScopedEnv env{};
    asio::io_context io;
    auto chain = make_credentials_chain(
        io.get_executor(), {make_environment_credentials(io.get_executor()),
                            make_static_credentials(io.get_executor(), {"AKS", "SKS", {}, {}})});
    Credentials at_hand;
    CHECK_FALSE(chain->credentials_at_hand(at_hand));  // no round yet: nothing worked so far
    CHECK(get(io, *chain).credentials.access_key_id == "AKS");
    REQUIRE(chain->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AKS");

    // The provider that worked last has nothing at hand: neither has the chain.
    auto scripted = std::make_shared<ScriptedProvider>(io.get_executor(), "scripted");
    scripted->next = {"AKX", "SKX", {}, {}};
    auto other = make_credentials_chain(io.get_executor(), {scripted});
    CHECK(get(io, *other).credentials.access_key_id == "AKX");
    CHECK_FALSE(other->credentials_at_hand(at_hand));
}

TEST_CASE(
    "a provider that throws: the cache fails its callers and refreshes again later; the "
    "chain asks the next one") {
    asio::io_context io;
    auto throwing = std::make_shared<outbox::test::ThrowingCredentials>(io.get_executor());
    auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(1000000);
    LogCapture log;
    auto cache = make_caching_credentials(io.get_executor(), throwing,
                                          {.retry_after_failure = std::chrono::seconds(10),
                                           .clock = [&] { return now; },
                                           .logger = log.logger()});
    const auto failed = get(io, *cache);
    CHECK(failed.ec == outbox::Errc::credentials_not_found);
    CHECK(log.text.find("throwing threw while fetching: the key service is down") !=
          std::string::npos);
    now += std::chrono::seconds(11);  // past the wait after a failure: asked again
    throwing->throwing = false;
    CHECK(get(io, *cache).credentials.access_key_id == "AKT");
    CHECK(throwing->calls == 2);

    auto again = std::make_shared<outbox::test::ThrowingCredentials>(io.get_executor());
    auto chain = make_credentials_chain(
        io.get_executor(),
        {again, make_static_credentials(io.get_executor(), {"AKS", "SKS", {}, {}})});
    const auto got = get(io, *chain);
    CHECK_FALSE(got.ec);
    CHECK(got.credentials.access_key_id == "AKS");
    CHECK(again->calls == 1);
}

TEST_CASE(
    "cache: shared refresh, refresh ahead of expiry, failed refresh keeps valid credentials") {
    asio::io_context io;
    auto inner = std::make_shared<ScriptedProvider>(io.get_executor(), "inner");
    auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(1000000);
    inner->next = {"AK1", "SK1", "T1", now + 1h};
    LogCapture log;
    auto cache = make_caching_credentials(
        io.get_executor(), inner,
        {.refresh_before_expiry = 5min, .clock = [&] { return now; }, .logger = log.logger()});

    // Five callers before anything is cached: one fetch serves them all.
    int answered = 0;
    for (int i = 0; i < 5; ++i)
        cache->async_get_credentials(
            [&](auto ec, Credentials c) { answered += !ec && c.access_key_id == "AK1"; });
    Credentials at_hand;
    CHECK_FALSE(cache->credentials_at_hand(at_hand));  // being fetched: not at hand yet
    io.run();
    CHECK(answered == 5);
    CHECK(inner->calls == 1);
    REQUIRE(cache->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AK1");
    CHECK(at_hand.expiration == now + 1h);

    now += 30min;  // still fresh
    CHECK(get(io, *cache).credentials.access_key_id == "AK1");
    CHECK(inner->calls == 1);
    CHECK(cache->credentials_at_hand(at_hand));

    now += 26min;  // inside the refresh window: served from cache, refreshed behind
    inner->next = {"AK2", "SK2", "T2", now + 1h};
    // Not at hand: a sender asks asynchronously, which starts the refresh.
    CHECK_FALSE(cache->credentials_at_hand(at_hand));
    CHECK(inner->calls == 1);
    CHECK(get(io, *cache).credentials.access_key_id == "AK1");
    io.restart();
    io.run();
    CHECK(inner->calls == 2);
    CHECK(get(io, *cache).credentials.access_key_id == "AK2");
    REQUIRE(cache->credentials_at_hand(at_hand));
    CHECK(at_hand.access_key_id == "AK2");

    now += 57min;  // refresh window of AK2; the refresh fails, AK2 is still valid
    inner->next_error = Errc::credentials_endpoint_error;
    CHECK(get(io, *cache).credentials.access_key_id == "AK2");
    io.restart();
    io.run();
    CHECK(inner->calls == 3);
    CHECK(log.text.find("stay in use until they expire") != std::string::npos);
    CHECK(get(io, *cache).credentials.access_key_id ==
          "AK2");  // no new attempt during the back-off
    CHECK(inner->calls == 3);

    now += 10min;  // AK2 expired, the source still fails: an error, not expired credentials
    auto got = get(io, *cache);
    CHECK(got.ec == Errc::credentials_endpoint_error);
    CHECK(log.text.find("SK2") == std::string::npos);
    CHECK(log.text.find("SK1") == std::string::npos);
}

TEST_CASE("cache: a source that refuses is asked again only after retry_after_failure") {
    asio::io_context io;
    auto inner = std::make_shared<ScriptedProvider>(io.get_executor(), "inner");
    auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(1000000);
    inner->next_error = Errc::credentials_endpoint_error;  // as STS refusing a wrong ExternalId
    auto cache = make_caching_credentials(
        io.get_executor(), inner, {.retry_after_failure = 10s, .clock = [&] { return now; }});
    CHECK(get(io, *cache).ec == Errc::credentials_endpoint_error);
    CHECK(inner->calls == 1);
    // Messages keep coming: each hears the same refusal, and the source is not asked.
    for (int i = 0; i < 100; ++i) CHECK(get(io, *cache).ec == Errc::credentials_endpoint_error);
    CHECK(inner->calls == 1);
    now += 11s;  // the back-off is over: asked again, and now it answers
    inner->next_error = {};
    inner->next = {"AK1", "SK1", "T1", now + 1h};
    CHECK(get(io, *cache).credentials.access_key_id == "AK1");
    CHECK(inner->calls == 2);
}

TEST_CASE(
    "default chain: environment before profile files; instance metadata skipped when disabled") {
    TempDir dir;
    const auto creds = dir.write(
        "credentials", "[default]\naws_access_key_id = AKPROFILE\naws_secret_access_key = SKP\n");
    asio::io_context io;
    {
        ScopedEnv env{{"AWS_SHARED_CREDENTIALS_FILE", creds.c_str()},
                      {"AWS_ACCESS_KEY_ID", "AKENV"},
                      {"AWS_SECRET_ACCESS_KEY", "SKENV"}};
        CHECK(get(io, *make_default_credentials(io.get_executor())).credentials.access_key_id ==
              "AKENV");
    }
    {
        ScopedEnv env{{"AWS_SHARED_CREDENTIALS_FILE", creds.c_str()}};
        CHECK(get(io, *make_default_credentials(io.get_executor())).credentials.access_key_id ==
              "AKPROFILE");
    }
    {
        ScopedEnv env{{"AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"},
                      {"AWS_CONFIG_FILE", "/nonexistent"}};
        CHECK(get(io, *make_default_credentials(io.get_executor())).ec ==
              Errc::credentials_not_found);
    }
}
