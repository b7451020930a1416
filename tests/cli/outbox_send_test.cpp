// `outbox send`: the real program against fauxqs behind the SigV4-checking proxy; the
// report, the exit status, and the messages read back by another client.
#include "catch.hpp"
#include "cli_run.hpp"
#include "local_peers.hpp"
#include "sigv4_proxy.hpp"

#include <simdjson.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

using outbox::test::create_queue;
using outbox::test::fauxqs;
using outbox::test::PeerProcess;
using outbox::test::peers_dir;
using outbox::test::receive_bodies;
using outbox::test::s3rver;

namespace {

const std::string credentials_env =
    "-u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID=AKIDOUTBOXTEST "
    "AWS_SECRET_ACCESS_KEY=outbox-test-secret "
    "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent "
    "AWS_SHARED_CREDENTIALS_FILE=/nonexistent";

PeerProcess& proxy() {
    static PeerProcess peer({"/usr/bin/python3", peers_dir() + "/sigv4_proxy.py", "--upstream",
                             "127.0.0.1:" + std::to_string(fauxqs().port())});
    return peer;
}

std::string fetch(const std::string& url) {
    std::string out;
    REQUIRE(outbox::test::run_command({"curl", "-sf", url}, out) == 0);
    return out;
}

using Run = outbox::test::CliRun;

Run run_send(const std::string& args, const std::string& input,
             const std::string& env = credentials_env) {
    return outbox::test::run_outbox_send(OUTBOX_CLI_PATH, args, input, env);
}

std::string endpoint() {
    return "--endpoint " + proxy().url();
}

}  // namespace

TEST_CASE("send: JSON Lines to a queue, a report line per input line, exit 0") {
    const std::string queue = create_queue("cli-events");
    std::string input;
    for (int i = 0; i < 25; ++i)
        input += "{\"order\":" + std::to_string(i) + ",\"note\":\"caf\xc3\xa9\"}\n";
    input += "\n";  // a blank line carries no message
    const Run r = run_send("--to '" + queue + "' " + endpoint(), input);
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK(r.err.find("delivered 25, failed 0") != std::string::npos);
    REQUIRE(r.report.size() == 25);
    simdjson::dom::parser parser;
    std::map<std::int64_t, std::string> ids;
    for (const auto& line : r.report) {
        simdjson::dom::object o = parser.parse(line);
        CHECK(std::string_view(o["status"]) == "delivered");
        CHECK(o["error"].is_null());
        CHECK(std::int64_t(o["attempts"]) == 1);
        ids[std::int64_t(o["index"])] = std::string(std::string_view(o["message_id"]));
    }
    CHECK(ids.size() == 25);
    CHECK(ids.begin()->first == 0);
    CHECK(ids.rbegin()->first == 24);
    auto bodies = receive_bodies(queue, 25);
    CHECK(bodies.size() == 25);
    for (int i = 0; i < 25; ++i)
        CHECK(std::count(bodies.begin(), bodies.end(),
                         "{\"order\":" + std::to_string(i) + ",\"note\":\"caf\xc3\xa9\"}") == 1);
}

TEST_CASE("send --objects: groups, attributes; bad lines fail alone and the exit status is 1") {
    const std::string queue = create_queue(
        "cli-orders.fifo", R"({"FifoQueue":"true","ContentBasedDeduplication":"true"})");
    const std::string input =
        R"({"body":"a-0","group_id":"a","attributes":{"kind":"order","amount":12.5}})"
        "\n"
        R"({"body":"b-0","group_id":"b","dedup_id":"b-0"})"
        "\n"
        R"(this is not json)"
        "\n"
        R"({"body":"a-1","group_id":"a"})"
        "\n"
        R"({"body":"no group"})"
        "\n"
        R"({"body":"b-1","group_id":"b","attributes":{"blob":{"type":"Binary","value":"xyz"}}})"
        "\n";
    const Run r = run_send("--objects --to '" + queue + "' " + endpoint(), input);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("delivered 4, failed 2") != std::string::npos);
    simdjson::dom::parser parser;
    std::map<std::int64_t, std::string> status, error;
    for (const auto& line : r.report) {
        simdjson::dom::object o = parser.parse(line);
        const auto index = std::int64_t(o["index"]);
        status[index] = std::string(std::string_view(o["status"]));
        if (!o["error"].is_null()) error[index] = std::string(std::string_view(o["error"]));
    }
    CHECK(status.size() == 6);
    CHECK(status[2] == "failed");
    CHECK(error[2].find("line 3") != std::string::npos);
    CHECK(status[4] == "failed");
    CHECK(error[4].find("group id") != std::string::npos);
    for (int i : {0, 1, 3, 5}) CHECK(status[i] == "delivered");
    auto bodies = receive_bodies(queue, 4);
    REQUIRE(bodies.size() == 4);
    // FIFO: a-0 before a-1, b-0 before b-1.
    auto pos = [&](const char* b) {
        return std::find(bodies.begin(), bodies.end(), b) - bodies.begin();
    };
    CHECK(pos("a-0") < pos("a-1"));
    CHECK(pos("b-0") < pos("b-1"));
}

TEST_CASE("send: more than the read-ahead window holds (32 MiB): the reader waits, nothing lost") {
    // 160 bodies of 240,000 bytes are 38.4 MB: the reader fills the window, waits for an
    // eighth of it to free up, and goes on; every line is delivered and reported.
    const std::string queue = create_queue("cli-window");
    std::string input;
    const int lines = 160;
    for (int i = 0; i < lines; ++i) {
        std::string body = "line-" + std::to_string(i) + "-";
        body.resize(240000, 'w');
        input += body + "\n";
    }
    const Run r = run_send("--to '" + queue + "' " + endpoint(), input);
    INFO(r.err.substr(0, 2000));
    CHECK(r.status == 0);
    CHECK(r.err.find("delivered " + std::to_string(lines) + ", failed 0") != std::string::npos);
    CHECK(r.report.size() == static_cast<std::size_t>(lines));
}

TEST_CASE(
    "send: usage errors exit 2; an unreachable queue fails every message with a reason, exit 1") {
    CHECK(run_send("", "x\n").status == 2);
    CHECK(run_send("--to not-a-url", "x\n").status == 2);
    CHECK(run_send("--to http://127.0.0.1:1/000000000000/q --bogus", "x\n").status == 2);

    // Nothing listens on port 1: connection refused, retried, then reported.
    const Run r = run_send("--to http://127.0.0.1:1/000000000000/q --max-attempts 2", "one\ntwo\n");
    CHECK(r.status == 1);
    CHECK(r.err.find("delivered 0, failed 2") != std::string::npos);
    REQUIRE(r.report.size() == 2);
    for (const auto& line : r.report) {
        CHECK(line.find("\"status\":\"failed\"") != std::string::npos);
        CHECK(line.find("refused") != std::string::npos);
    }
    CHECK(r.err.find("outbox-test-secret") == std::string::npos);
}

TEST_CASE("send --stage: bodies over the queue's limit go to S3, the report carries the URL") {
    const std::string queue = create_queue("cli-staged", R"({"MaximumMessageSize":"262144"})");
    const std::string s3_env =
        "-u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER "
        "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent "
        "AWS_SHARED_CREDENTIALS_FILE=/nonexistent";
    const std::string big = "{\"blob\":\"" + std::string(300 * 1024, 'b') + "\"}";
    const std::string stage =
        " --stage s3://cli-staging/cli/payloads --s3-endpoint " + s3rver().url();
    const Run r = run_send("--to '" + queue + "' --endpoint " + fauxqs().url() + stage,
                           big + "\nsmall\n", s3_env);
    INFO(r.err);
    CHECK(r.status == 0);
    REQUIRE(r.report.size() == 2);
    simdjson::dom::parser parser;
    std::string staged_url;
    for (const auto& line : r.report) {
        simdjson::dom::object o = parser.parse(line);
        CHECK(std::string_view(o["status"]) == "delivered");
        const bool has_url = o["staged_url"].error() == simdjson::SUCCESS;
        CHECK(has_url == (std::int64_t(o["index"]) == 0));
        if (has_url) staged_url = std::string(std::string_view(o["staged_url"]));
    }
    REQUIRE_FALSE(staged_url.empty());
    CHECK(staged_url.find("/cli-staging/cli/payloads/") != std::string::npos);
    CHECK(fetch(staged_url) == big);
    auto bodies = receive_bodies(queue, 2);
    CHECK(std::count(bodies.begin(), bodies.end(), "small") == 1);
    CHECK(std::count(bodies.begin(), bodies.end(),
                     R"({"status":"success","type":"s3_payload","url":")" + staged_url +
                         R"(","expires_in":600})") == 1);

    // --stage-always with a short URL lifetime and CloudEvents around every message.
    const Run all = run_send("--to '" + queue + "' --endpoint " + fauxqs().url() + stage +
                                 " --stage-always --url-expires 120 --envelope cloudevents",
                             "tiny\n", s3_env);
    CHECK(all.status == 0);
    REQUIRE(all.report.size() == 1);
    CHECK(all.report[0].find("\"staged_url\":") != std::string::npos);
    auto events = receive_bodies(queue, 1);
    REQUIRE(events.size() == 1);
    simdjson::dom::object event = parser.parse(events[0]);
    CHECK(std::string_view(event["specversion"]) == "1.0");
    CHECK(std::int64_t(event["data"]["expires_in"]) == 120);
    CHECK(fetch(std::string(std::string_view(event["data"]["url"]))) == "tiny");

    // The upload's checksum and conditional write, chosen on the command line, seen by the
    // checking proxy in front of s3rver (which verifies the checksum against the body).
    outbox::test::SigV4Proxy s3_proxy(s3rver().port(), "s3", "S3RVER", "S3RVER");
    const Run crc64 = run_send(
        "--to '" + queue + "' --endpoint " + fauxqs().url() +
            " --stage s3://cli-staging/cli/payloads --s3-endpoint " + s3_proxy.process.url() +
            " --stage-always --stage-checksum crc64nvme --stage-unconditional",
        "checked\n", s3_env);
    CHECK(crc64.status == 0);
    const auto put = s3_proxy.last_headers();
    CHECK(put.contains("x-amz-checksum-crc64nvme"));
    CHECK_FALSE(put.contains("x-amz-checksum-crc32"));
    CHECK_FALSE(put.contains("if-none-match"));
    CHECK(s3_proxy.stat("checksums_verified") == 1);
    auto checked = receive_bodies(queue, 1);
    REQUIRE(checked.size() == 1);
    simdjson::dom::object pointer = parser.parse(checked[0]);
    CHECK(fetch(std::string(std::string_view(pointer["url"]))) == "checked");
    // The Extended Client's pointer, resolved as that library's readers resolve it.
    const Run extended = run_send("--to '" + queue + "' --endpoint " + fauxqs().url() + stage +
                                      " --stage-always --envelope extended-client",
                                  "{\"pointed\":true}\n", s3_env);
    CHECK(extended.status == 0);
    const std::string received = outbox::test::receive_json(queue, 1, 20);
    std::string resolved;
    REQUIRE(outbox::test::run_command(
                {"/usr/bin/python3", outbox::test::peers_dir() + "/extended_client_reader.py",
                 "--s3-endpoint", s3rver().url()},
                resolved, received) == 0);
    simdjson::dom::array read = parser.parse(resolved).get_array();
    REQUIRE(read.size() == 1);
    CHECK(bool(read.at(0)["pointer"]));
    CHECK(std::string_view(read.at(0)["body"]) == "{\"pointed\":true}");
    CHECK(run_send("--to '" + queue + "' --envelope extended-client", "x\n").status == 2);

    const Run bad_checksum =
        run_send("--to '" + queue + "'" + stage + " --stage-checksum md5", "x\n", s3_env);
    CHECK(bad_checksum.status == 2);
    CHECK(bad_checksum.err.find("--stage-checksum must be crc32, crc64nvme or none") !=
          std::string::npos);
    CHECK(run_send("--to '" + queue + "' --stage-checksum none", "x\n").status == 2);
    CHECK(run_send("--to '" + queue + "' --stage-always", "x\n").status == 2);  // needs --stage
    CHECK(run_send("--to '" + queue + "' --stage s3://Bad_Bucket", "x\n").status == 2);
    CHECK(run_send("--to '" + queue + "' --stage s3://cli-staging --url-expires 0", "x\n").status ==
          2);
}

TEST_CASE("presign --link and the links command: a link answered with a fresh URL") {
    const std::string queue = create_queue("cli-links", "{}");
    const std::string s3_env =
        "-u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER "
        "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent "
        "AWS_SHARED_CREDENTIALS_FILE=/nonexistent";
    // An object to link to, staged by outbox send.
    const Run staged = run_send("--to '" + queue + "' --endpoint " + fauxqs().url() +
                                    " --stage s3://cli-staging/cli/links --s3-endpoint " +
                                    s3rver().url() + " --stage-always",
                                "{\"linked\":1}\n", s3_env);
    REQUIRE(staged.status == 0);
    simdjson::dom::parser parser;
    const std::string url{std::string_view(parser.parse(staged.report.at(0))["staged_url"])};
    const auto path_at = url.find("/cli-staging/") + std::string("/cli-staging/").size();
    const std::string key = url.substr(path_at, url.find('?') - path_at);

    const auto keys = std::filesystem::temp_directory_path() /
                      ("outbox-cli-link-keys-" + std::to_string(::getpid()));
    std::ofstream(keys) << "cli-key " << std::string(40, 'k') << "\n";
    outbox::test::PeerProcess links(
        {"/usr/bin/env", "-u", "AWS_SESSION_TOKEN", "-u", "AWS_PROFILE", "AWS_ACCESS_KEY_ID=S3RVER",
         "AWS_SECRET_ACCESS_KEY=S3RVER", "AWS_EC2_METADATA_DISABLED=true",
         "AWS_CONFIG_FILE=/nonexistent", OUTBOX_CLI_PATH, "links", "--listen", "127.0.0.1:0",
         "--link-keys", keys.string(), "--endpoint", s3rver().url(), "--bucket", "cli-staging"});
    std::string link;
    REQUIRE(
        outbox::test::run_command({OUTBOX_CLI_PATH, "presign", "s3://cli-staging/" + key, "--link",
                                   links.url(), "--link-keys", keys.string(), "--expires", "86400"},
                                  link) == 0);
    while (!link.empty() && link.back() == '\n') link.pop_back();
    CHECK(link.starts_with(links.url() + "/p/cli-staging/"));
    CHECK(link.find(std::string(40, 'k')) == std::string::npos);
    std::string body;
    REQUIRE(outbox::test::run_command({"curl", "-sfL", link}, body) == 0);
    CHECK(body == "{\"linked\":1}");
    // A link to another bucket, signed with the right key, is still refused (--bucket).
    std::string other;
    REQUIRE(outbox::test::run_command({OUTBOX_CLI_PATH, "presign", "s3://elsewhere/" + key,
                                       "--link", links.url(), "--link-keys", keys.string()},
                                      other) == 0);
    while (!other.empty() && other.back() == '\n') other.pop_back();
    std::string refused;
    REQUIRE(outbox::test::run_command(
                {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", other}, refused) == 0);
    CHECK(refused == "403");

    std::string ignored;
    CHECK(outbox::test::run_command(
              {OUTBOX_CLI_PATH, "presign", "s3://cli-staging/" + key, "--link", links.url()},
              ignored) == 2);  // --link-keys missing
    CHECK(outbox::test::run_command({OUTBOX_CLI_PATH, "links", "--listen", "127.0.0.1:0"},
                                    ignored) == 2);
    std::filesystem::remove(keys);
}
