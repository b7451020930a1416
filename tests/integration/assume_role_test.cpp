// A customer's role, assumed the way AWS recommends for third parties: STS AssumeRole with our
// credentials and the customer's ExternalId. A local STS endpoint behind the signature-checking
// proxy (botocore checks our signature with our keys) hands out the role's credentials; an
// SqsDestination then delivers with them through a second proxy that accepts only those, to
// fauxqs, read back by the AWS SDK for JavaScript.
#include "catch.hpp"
#include "destination_runs.hpp"
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"
#include "test_http_server.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <mutex>

namespace asio = boost::asio;
using outbox::Errc;
using outbox::test::TestReply;
using outbox::test::TestRequest;

namespace {

const std::string our_key = "AKIDPLATFORM", our_secret = "platform-secret";
const std::string role_key = "ASIACUSTOMERROLE", role_secret = "customer-role-secret",
                  role_token = "FwoGZXIvYXdzEC/customer+session==";
const std::string role_arn = "arn:aws:iam::210987654321:role/outbox-delivery";

std::string form_value(const std::string& body, const std::string& name) {
    const std::string key = name + "=";
    std::size_t at = 0;
    while ((at = body.find(key, at)) != std::string::npos) {
        if (at == 0 || body[at - 1] == '&') {
            const std::size_t end = body.find('&', at);
            return body.substr(at + key.size(), end == std::string::npos ? std::string::npos
                                                                         : end - at - key.size());
        }
        at += key.size();
    }
    return {};
}

TestReply sts_error(unsigned status, const std::string& code, const std::string& message) {
    TestReply r;
    r.status = status;
    r.headers = {{"Content-Type", "text/xml"}};
    r.body = "<ErrorResponse><Error><Type>Sender</Type><Code>" + code + "</Code><Message>" +
             message + "</Message></Error></ErrorResponse>";
    return r;
}

// STS as the customer's role trusts it: our account, with their ExternalId.
struct LocalSts {
    std::mutex mutex;
    std::vector<std::string> bodies;
    outbox::test::TestHttpServer server{[this](const TestRequest& r) {
        {
            std::lock_guard lock(mutex);
            bodies.push_back(r.body);
        }
        if (r.method != "POST" || form_value(r.body, "Action") != "AssumeRole" ||
            form_value(r.body, "Version") != "2011-06-15")
            return sts_error(400, "InvalidAction", "not an AssumeRole request");
        if (form_value(r.body, "RoleArn") !=
            "arn%3Aaws%3Aiam%3A%3A210987654321%3Arole%2Foutbox-delivery")
            return sts_error(403, "AccessDenied", "no such role");
        if (form_value(r.body, "ExternalId") != "customer-42-f00d")
            return sts_error(403, "AccessDenied",
                             "User is not authorized to perform: sts:AssumeRole (ExternalId)");
        TestReply reply;
        reply.headers = {{"Content-Type", "text/xml"}};
        reply.body =
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            "<AssumeRoleResult><AssumedRoleUser><Arn>arn:aws:sts::210987654321:assumed-role/"
            "outbox-delivery/" +
            form_value(r.body, "RoleSessionName") +
            "</Arn></AssumedRoleUser><Credentials><AccessKeyId>" + role_key +
            "</AccessKeyId><SecretAccessKey>" + role_secret + "</SecretAccessKey><SessionToken>" +
            role_token +
            "</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
            "</AssumeRoleResult></AssumeRoleResponse>";
        return reply;
    }};
    // botocore checks that what reaches STS is signed by us, for sts in us-east-1 (the
    // proxy's errors would be 403s naming the mismatch).
    outbox::test::SigV4Proxy checked{server.port(), "sts", our_key, our_secret};
};

outbox::AssumeRoleOptions role_options(const LocalSts& sts, std::string external_id) {
    outbox::AssumeRoleOptions o;
    o.role_arn = role_arn;
    o.external_id = std::move(external_id);
    o.session_name = "outbox-customer-42";
    o.region = "us-east-1";
    o.sts_endpoint = sts.checked.process.url();
    return o;
}

}  // namespace

TEST_CASE(
    "AssumeRole with the customer's ExternalId: the role's credentials deliver to their queue",
    "[credentials]") {
    LocalSts sts;
    outbox::test::SigV4Proxy customer_sqs(outbox::test::fauxqs().port(), "sqs", role_key,
                                          role_secret);
    const std::string queue = outbox::test::create_queue("assume-role-customer");
    asio::io_context io;
    auto ours = outbox::make_static_credentials(io.get_executor(), {our_key, our_secret});
    auto role = outbox::make_assume_role_credentials(io.get_executor(), ours,
                                                     role_options(sts, "customer-42-f00d"));

    outbox::SqsDestinationConfig c;
    c.queue_url = queue;
    c.endpoint = customer_sqs.process.url();
    c.region = "us-east-1";
    c.credentials = role;
    outbox::SqsDestination sqs(io.get_executor(), c);
    std::vector<outbox::Message> messages;
    for (int i = 0; i < 5; ++i)
        messages.push_back(outbox::test::text_message("as the role " + std::to_string(i)));
    for (const auto& o : outbox::test::send_all(io, sqs, std::move(messages))) {
        INFO(o.receipt.diagnostics.message);
        CHECK_FALSE(o.ec);
    }
    CHECK(outbox::test::receive_bodies(queue, 5, 10).size() == 5);
    // Signed by us (botocore agreed at the STS proxy), once: the role's credentials are cached.
    CHECK(sts.checked.stat("signatures_checked") == 1);
    CHECK(sts.checked.stat("signature_failures") == 0);
    CHECK(customer_sqs.stat("signature_failures") == 0);
    CHECK(customer_sqs.last_headers()["x-amz-security-token"] == role_token);
    std::lock_guard lock(sts.mutex);
    REQUIRE(sts.bodies.size() == 1);
    CHECK(form_value(sts.bodies[0], "RoleSessionName") == "outbox-customer-42");
    CHECK(form_value(sts.bodies[0], "DurationSeconds") == "3600");
    CHECK(outbox::test::close_destination(io, sqs) == boost::system::error_code{});
}

TEST_CASE("AssumeRole refused (a wrong ExternalId) fails the send with STS's reason in the log",
          "[credentials]") {
    LocalSts sts;
    asio::io_context io;
    std::string logged;
    std::mutex log_mutex;
    auto options = role_options(sts, "someone-elses-id");
    options.http.logger = {outbox::LogLevel::debug, [&](outbox::LogLevel, std::string_view m) {
                               std::lock_guard lock(log_mutex);
                               logged.append(m).push_back('\n');
                           }};
    auto ours = outbox::make_static_credentials(io.get_executor(), {our_key, our_secret});
    auto role = outbox::make_assume_role_credentials(io.get_executor(), ours, options);
    std::optional<boost::system::error_code> got;
    role->async_get_credentials(
        [&](boost::system::error_code ec, outbox::Credentials) { got = ec; });
    io.run();
    REQUIRE(got);
    CHECK(*got == Errc::credentials_endpoint_error);
    CHECK(sts.checked.stat("signature_failures") == 0);
    std::lock_guard lock(log_mutex);
    CHECK(logged.find("sts:AssumeRole (ExternalId)") != std::string::npos);
    CHECK(logged.find(our_secret) == std::string::npos);

    CHECK_THROWS_AS(outbox::make_assume_role_credentials(io.get_executor(), ours, {}),
                    std::invalid_argument);
    auto short_lived = role_options(sts, "x");
    short_lived.duration = std::chrono::seconds(60);
    CHECK_THROWS_AS(outbox::make_assume_role_credentials(io.get_executor(), ours, short_lived),
                    std::invalid_argument);
}

TEST_CASE("static keys rotated mid-run: the next requests are signed with the new keys",
          "[credentials]") {
    const std::string new_key = "AKIDROTATEDKEY", new_secret = "rotated-secret";
    outbox::test::SigV4Proxy sqs(outbox::test::fauxqs().port(), "sqs", role_key, role_secret,
                                 {"--also-key", new_key + ":" + new_secret});
    const std::string queue = outbox::test::create_queue("rotated-keys");
    asio::io_context io;
    auto keys = outbox::make_rotatable_credentials(io.get_executor(), {role_key, role_secret});
    outbox::SqsDestinationConfig c;
    c.queue_url = queue;
    c.endpoint = sqs.process.url();
    c.region = "us-east-1";
    c.credentials = keys;
    outbox::SqsDestination destination(io.get_executor(), c);
    auto send = [&](const std::string& body) {
        auto outcomes = outbox::test::send_all(io, destination, {outbox::test::text_message(body)});
        INFO(outcomes[0].receipt.diagnostics.message);
        return outcomes[0].ec;
    };
    CHECK_FALSE(send("with the old keys"));
    CHECK(sqs.last_headers()["authorization"].find("Credential=" + role_key + "/") !=
          std::string::npos);
    keys->rotate({new_key, new_secret});
    CHECK_FALSE(send("with the new keys"));
    CHECK(sqs.last_headers()["authorization"].find("Credential=" + new_key + "/") !=
          std::string::npos);
    CHECK(sqs.stat("signature_failures") == 0);
    // Rotated to keys the service does not know: refused, and said so.
    keys->rotate({"AKIDUNKNOWN", "nobody's-secret"});
    CHECK(send("with unknown keys") == Errc::service_error);
    keys->rotate({});
    CHECK(send("with no keys") == Errc::missing_credentials);
    CHECK(outbox::test::receive_bodies(queue, 2, 10).size() == 2);
}
