// `outbox sign` and `outbox presign`: the S3 documentation examples through the same code
// the program runs, then the real program: output, exit status, error messages.
#include "sign_command.hpp"

#include "catch.hpp"
#include "signing_vectors.hpp"

#include <outbox/sigv4.hpp>

#include <simdjson.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

namespace fs = std::filesystem;
using outbox::test::read_file;

namespace {

struct Run {
    int status;
    std::string out;
    std::string err;
};

// Runs the outbox program through the shell with `args` (already quoted) and `env` prefix.
Run run_outbox(const std::string& args, const std::string& env = "",
               const std::string& stdin_text = "") {
    const fs::path dir =
        fs::temp_directory_path() / ("outbox-cli-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "in") << stdin_text;
    const std::string cmd = "env " + env + " '" OUTBOX_CLI_PATH "' " + args + " <'" +
                            (dir / "in").string() + "' >'" + (dir / "out").string() + "' 2>'" +
                            (dir / "err").string() + "'";
    const int raw = std::system(cmd.c_str());
    Run r{WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_file(dir / "out"), read_file(dir / "err")};
    fs::remove_all(dir);
    return r;
}

std::string without_space_after_commas(std::string s) {
    for (std::size_t p; (p = s.find(", ")) != std::string::npos;) s.erase(p + 1, 1);
    return s;
}

// The "request" objects of s3-doc-examples.json as one JSON array.
std::string doc_example_requests(simdjson::dom::parser& parser, simdjson::dom::array& examples) {
    static simdjson::padded_string text;
    text = simdjson::padded_string(read_file(outbox::test::vectors_dir() / "s3-doc-examples.json"));
    examples = parser.parse(text)["examples"].get_array();
    std::string json = "[";
    for (simdjson::dom::element e : examples) {
        if (json.size() > 1) json += ",";
        json += simdjson::to_string(e["request"]);
    }
    return json + "]";
}

}  // namespace

TEST_CASE("sign: every S3 documentation example matches the published values") {
    simdjson::dom::parser parser;
    simdjson::dom::array examples;
    const std::string requests = doc_example_requests(parser, examples);
    std::vector<outbox::cli::SignResult> results;
    std::string error;
    REQUIRE(outbox::cli::sign_requests(requests, results, error));
    REQUIRE(results.size() == examples.size());
    std::size_t i = 0;
    for (simdjson::dom::element e : examples) {
        const auto expected = e["expected"];
        const outbox::cli::SignResult& r = results[i++];
        CAPTURE(std::string(e["name"].get_string().value()));
        CHECK(r.canonical_request == expected["canonical_request"].get_string().value());
        CHECK(r.string_to_sign == expected["string_to_sign"].get_string().value());
        CHECK(r.signature == expected["signature"].get_string().value());
        std::string_view url, authorization;
        if (expected["signed_url"].get(url) == simdjson::SUCCESS) CHECK(r.url == url);
        if (expected["authorization"].get(authorization) == simdjson::SUCCESS)
            CHECK(without_space_after_commas(r.authorization) == authorization);
    }
}

TEST_CASE("the outbox program signs from a file and from standard input") {
    simdjson::dom::parser parser;
    simdjson::dom::array examples;
    const std::string requests = doc_example_requests(parser, examples);
    const fs::path file =
        fs::temp_directory_path() / ("outbox-sign-input-" + std::to_string(::getpid()));
    std::ofstream(file) << requests;
    for (const Run& r : {run_outbox("sign '" + file.string() + "'"),
                         run_outbox("sign -", "", requests), run_outbox("sign", "", requests)}) {
        REQUIRE(r.status == 0);
        CHECK(r.err.empty());
        simdjson::dom::parser out_parser;
        const simdjson::padded_string out(r.out);
        simdjson::dom::array results = out_parser.parse(out).get_array();
        REQUIRE(results.size() == examples.size());
        std::size_t i = 0;
        for (simdjson::dom::element e : examples) {
            const auto got = results.at(i++);
            CHECK(got["id"].get_string().value() == "");  // the examples carry no id
            CHECK(got["signature"].get_string().value() ==
                  e["expected"]["signature"].get_string().value());
        }
    }
    fs::remove(file);
}

namespace {

// A header-mode request object with `overrides` (field -> raw JSON, "" to leave it out).
std::string request_json(const std::string& id,
                         const std::map<std::string, std::string>& overrides = {}) {
    std::map<std::string, std::string> fields = {
        {"id", "\"" + id + "\""},
        {"mode", R"("header")"},
        {"method", R"("POST")"},
        {"url", R"("https://sqs.us-east-1.amazonaws.com/")"},
        {"region", R"("us-east-1")"},
        {"service", R"("sqs")"},
        {"credentials", R"({"access_key":"AK","secret_key":"SK"})"},
        {"timestamp", R"("20240101T000000Z")"},
    };
    for (const auto& [k, v] : overrides) fields[k] = v;
    std::string json = "{";
    for (const auto& [k, v] : fields) {
        if (v.empty()) continue;
        if (json.size() > 1) json += ",";
        json += "\"" + k + "\":" + v;
    }
    return json + "}";
}

}  // namespace

TEST_CASE("sign: malformed input names the request and the field, exit status 2") {
    struct Case {
        std::string json;
        std::string message;
    };
    const Case cases[] = {
        {"not json", "not valid JSON"},
        {"{}", "must be a JSON array"},
        {"[1]", "request 0: must be a JSON object"},
        {"[" + request_json("a") + "," + request_json("b", {{"mode", R"("sigv2")"}}) + "]",
         R"(request 1 (id "b"): field "mode")"},
        {"[" + request_json("x", {{"method", ""}}) + "]",
         R"(request 0 (id "x"): field "method": is missing)"},
        {"[" + request_json("m", {{"method", R"("GET /")"}}) + "]", R"(field "method")"},
        {"[" + request_json("t", {{"timestamp", R"("2024-01-01")"}}) + "]", R"(field "timestamp")"},
        {"[" + request_json("t", {{"timestamp", R"("20240230T000000Z")"}}) + "]",
         R"(field "timestamp")"},
        {"[" + request_json("u", {{"url", R"("ftp://x/")"}}) + "]",
         R"(field "url": scheme must be http or https)"},
        {"[" + request_json("u", {{"url", R"("https:///path")"}}) + "]",
         R"(field "url": has no host)"},
        {"[" + request_json("h", {{"headers", R"([["Bad Name","v"]])"}}) + "]",
         R"(field "headers[0]")"},
        {"[" + request_json("h", {{"headers", R"([["a"]])"}}) + "]",
         R"(field "headers[0]": must be a [name, value])"},
        {"[" + request_json("c", {{"credentials", R"({"access_key":"AK"})"}}) + "]",
         R"(field "credentials.secret_key")"},
        {"[" + request_json("p", {{"payload_hash", R"("abc")"}}) + "]", R"(field "payload_hash")"},
        {"[" + request_json("r", {{"region", R"("")"}}) + "]", R"(field "region": is empty)"},
        {"[" + request_json("s", {{"service", ""}}) + "]", R"(field "service": is missing)"},
        {"[" + request_json("e", {{"mode", R"("s3-presign")"}, {"expires", "604801"}}) + "]",
         R"(field "expires": must be from 1 to 604800 seconds)"},
        {"[" + request_json("e", {{"mode", R"("s3-presign")"}, {"expires", R"("10")"}}) + "]",
         R"(field "expires": must be an integer)"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.json);
        const Run r = run_outbox("sign -", "", c.json);
        CHECK(r.status == 2);
        CHECK(r.out.empty());
        CHECK(r.err.find(c.message) != std::string::npos);
    }
    CHECK(run_outbox("sign /nonexistent/file.json").status == 2);
    // The valid base request itself signs.
    const Run ok = run_outbox("sign -", "", "[" + request_json("ok") + "]");
    CHECK(ok.status == 0);
    CHECK(
        ok.out.find(
            R"("authorization": "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs/aws4_request, )") !=
        std::string::npos);
}

TEST_CASE("sign: a Host header, a token and a key without '=' are honoured") {
    const std::string json =
        R"([{"id":"one","mode":"s3-presign","method":"GET","url":"http://127.0.0.1:4568/bucket/a%20b?versions",)"
        R"("headers":[["Host","127.0.0.1:4568"]],"region":"us-east-1",)"
        R"("credentials":{"access_key":"AK","secret_key":"SK","token":"T/k+n"},"timestamp":"20240101T000000Z",)"
        R"("expires":60}])";
    std::vector<outbox::cli::SignResult> results;
    std::string error;
    REQUIRE(outbox::cli::sign_requests(json, results, error));
    REQUIRE(results.size() == 1);
    const auto& r = results[0];
    CHECK(r.id == "one");
    CHECK(r.canonical_request.starts_with("GET\n/bucket/a%20b\nX-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    CHECK(r.canonical_request.find(
              "&X-Amz-Security-Token=T%2Fk%2Bn&X-Amz-SignedHeaders=host&versions=\n") !=
          std::string::npos);
    CHECK(r.canonical_request.find("\nhost:127.0.0.1:4568\n") != std::string::npos);
    CHECK(r.url.starts_with("http://127.0.0.1:4568/bucket/a%20b?versions&X-Amz-Algorithm="));
    CHECK(r.url.ends_with("&X-Amz-Signature=" + r.signature));
}

TEST_CASE("presign: a path-style URL on a local endpoint, verifiable with its own date") {
    const std::string env =
        "-u AWS_SESSION_TOKEN AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER";
    const Run r = run_outbox(
        "presign 's3://my-bucket/dir/a b+c.json' --endpoint http://127.0.0.1:4568 "
        "--expires 600 --region eu-west-1",
        env);
    REQUIRE(r.status == 0);
    const std::string url = r.out.substr(0, r.out.find('\n'));
    CHECK(url.starts_with(
        "http://127.0.0.1:4568/my-bucket/dir/a%20b%2Bc.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=S3RVER%2F"));
    CHECK(url.find("%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=") != std::string::npos);
    CHECK(url.find("&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature=") !=
          std::string::npos);

    // Re-sign with the date the URL carries: the signature must be the same.
    const std::size_t d = url.find("X-Amz-Date=") + 11;
    std::chrono::system_clock::time_point when;
    REQUIRE_FALSE(outbox::sigv4::parse_amz_date(url.substr(d, 16), when));
    const outbox::sigv4::Signer signer(
        {.region = "eu-west-1", .service = "s3", .path_rule = outbox::sigv4::PathRule::s3});
    outbox::sigv4::PresignedQuery q;
    REQUIRE_FALSE(
        signer.presign({.host = "127.0.0.1:4568", .path = "/my-bucket/dir/a%20b%2Bc.json"},
                       {"S3RVER", "S3RVER", {}, {}}, when, std::chrono::seconds(600), q));
    CHECK(url.ends_with("X-Amz-Signature=" + q.signature));
}

TEST_CASE("presign: virtual-hosted by default, path-style for dotted buckets, token in the query") {
    const std::string env =
        "AWS_ACCESS_KEY_ID=AK AWS_SECRET_ACCESS_KEY=SK AWS_SESSION_TOKEN=tok AWS_REGION=eu-west-1";
    Run r = run_outbox("presign s3://bucket/key --method PUT", env);
    REQUIRE(r.status == 0);
    CHECK(r.out.starts_with("https://bucket.s3.eu-west-1.amazonaws.com/key?X-Amz-Algorithm="));
    CHECK(r.out.find("&X-Amz-Expires=3600&X-Amz-Security-Token=tok&X-Amz-SignedHeaders=host&") !=
          std::string::npos);
    r = run_outbox("presign s3://my.bucket/key", env);
    REQUIRE(r.status == 0);
    CHECK(r.out.starts_with("https://s3.eu-west-1.amazonaws.com/my.bucket/key?"));
}

TEST_CASE("presign: credentials from a profile file through the default chain") {
    const fs::path file =
        fs::temp_directory_path() / ("outbox-presign-creds-" + std::to_string(::getpid()));
    std::ofstream(file)
        << "[ci]\naws_access_key_id = AKPROFILE\naws_secret_access_key = SKPROFILE\n";
    const Run r = run_outbox("presign s3://bucket/key --region eu-west-1",
                             "-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_PROFILE=ci "
                             "AWS_SHARED_CREDENTIALS_FILE=" +
                                 file.string() + " AWS_EC2_METADATA_DISABLED=true");
    fs::remove(file);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("X-Amz-Credential=AKPROFILE%2F") != std::string::npos);
}

TEST_CASE("presign: bad arguments exit 2, missing credentials exit 1, secrets never printed") {
    const std::string env = "AWS_ACCESS_KEY_ID=AK AWS_SECRET_ACCESS_KEY=SECRETVALUE";
    for (const char* args :
         {"presign", "presign s3://bucket/key --expires 0",
          "presign s3://bucket/key --expires 604801", "presign s3://bucket/key --expires ten",
          "presign s3://bucket/key --method DELETE", "presign s3://bucket",
          "presign http://bucket/key", "presign s3://B/key",
          "presign s3://bucket/key --endpoint not-a-url", "presign s3://bucket/key --bogus"}) {
        CAPTURE(args);
        const Run r = run_outbox(args, env);
        CHECK(r.status == 2);
        CHECK_FALSE(r.err.empty());
        CHECK(r.err.find("SECRETVALUE") == std::string::npos);
    }
    const Run r =
        run_outbox("presign s3://bucket/key", "-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY");
    CHECK(r.status == 1);
    CHECK(r.err.find("no credentials (no AWS credentials found; tried environment, web "
                     "identity, profile \"default\", container, instance metadata)") !=
          std::string::npos);
    CHECK(run_outbox("frobnicate").status == 2);
    CHECK(run_outbox("--help").status == 0);
}
