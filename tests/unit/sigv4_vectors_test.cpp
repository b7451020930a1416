// Acceptance: every case of Amazon's SigV4 suites, byte for byte, in header and query mode.
#include <outbox/sigv4.hpp>

#include "catch.hpp"
#include "signing_vectors.hpp"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;
using namespace outbox;
using outbox::test::parse_http_text;
using outbox::test::read_file;

namespace {

std::vector<std::string> split_sorted(const std::string& query) {
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (pos <= query.size()) {
        std::size_t end = query.find('&', pos);
        if (end == std::string::npos) end = query.size();
        parts.push_back(query.substr(pos, end - pos));
        pos = end + 1;
    }
    std::sort(parts.begin(), parts.end());
    return parts;
}

// The value of the header `name` in a signed request text.
std::string header_of(const outbox::test::HttpText& r, std::string_view name) {
    for (const auto& [n, v] : r.headers)
        if (n == name) return v;
    return {};
}

struct SignInputs {
    outbox::test::HttpText http;
    std::string host;
    std::vector<sigv4::Header> headers;
    std::string payload_hash;
};

SignInputs inputs_from(const std::string& request_text, bool drop_amz_date) {
    SignInputs in{parse_http_text(request_text), {}, {}, {}};
    for (const auto& [name, value] : in.http.headers) {
        if (name == "Host")
            in.host = value;
        else if (drop_amz_date && name == "X-Amz-Date")
            continue;
        else
            in.headers.push_back({name, value});
    }
    in.payload_hash = sigv4::payload_hash(in.http.body).view();
    return in;
}

sigv4::Request request_of(const SignInputs& in) {
    return {.method = in.http.method,
            .host = in.host,
            .path = in.http.path,
            .query = in.http.query,
            .headers = in.headers,
            .payload_hash = in.payload_hash};
}

std::chrono::system_clock::time_point at(std::string_view amz_date) {
    std::chrono::system_clock::time_point t;
    REQUIRE_FALSE(sigv4::parse_amz_date(amz_date, t));
    return t;
}

std::vector<fs::path> sorted_dirs(const fs::path& root) {
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory()) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

}  // namespace

TEST_CASE("v4 suite: header and query signing, every case") {
    const auto cases = sorted_dirs(outbox::test::vectors_dir() / "v4");
    REQUIRE(cases.size() == 38);
    for (const fs::path& dir : cases) {
        const std::string name = dir.filename().string();
        DYNAMIC_SECTION(name) {
            simdjson::dom::parser parser;
            const simdjson::padded_string ctx_text(read_file(dir / "context.json"));
            const simdjson::dom::element ctx = parser.parse(ctx_text);
            Credentials creds;
            creds.access_key_id =
                std::string(ctx["credentials"]["access_key_id"].get_string().value());
            creds.secret_access_key =
                std::string(ctx["credentials"]["secret_access_key"].get_string().value());
            std::string_view token;
            if (ctx["credentials"]["token"].get(token) == simdjson::SUCCESS)
                creds.session_token = token;
            bool omit_token = false;
            if (ctx["omit_session_token"].get(omit_token) != simdjson::SUCCESS) omit_token = false;
            std::string stamp(ctx["timestamp"].get_string().value());  // 2015-08-30T12:36:00Z
            stamp.erase(std::remove_if(stamp.begin(), stamp.end(),
                                       [](char c) { return c == '-' || c == ':'; }),
                        stamp.end());

            const sigv4::Signer signer({
                .region = std::string(ctx["region"].get_string().value()),
                .service = std::string(ctx["service"].get_string().value()),
                .path_rule = ctx["normalize"].get_bool().value()
                                 ? sigv4::PathRule::normalize_and_encode
                                 : sigv4::PathRule::encode_only,
                .send_content_sha256 = ctx["sign_body"].get_bool().value(),
                .sign_session_token = !omit_token,
            });
            const SignInputs in = inputs_from(read_file(dir / "request.txt"), false);
            const sigv4::Request request = request_of(in);

            // Header mode.
            sigv4::HeaderSignature sig;
            sigv4::SigningTrace trace;
            REQUIRE_FALSE(signer.sign_headers(request, creds, at(stamp), sig, &trace));
            CHECK(trace.canonical_request == read_file(dir / "header-canonical-request.txt"));
            CHECK(trace.string_to_sign == read_file(dir / "header-string-to-sign.txt"));
            CHECK(sig.signature == read_file(dir / "header-signature.txt"));
            const auto signed_http = parse_http_text(read_file(dir / "header-signed-request.txt"));
            CHECK(sig.authorization == header_of(signed_http, "Authorization"));
            CHECK(sig.amz_date == header_of(signed_http, "X-Amz-Date"));

            // Query mode (the suite signs the body hash here, not UNSIGNED-PAYLOAD).
            sigv4::PresignedQuery q;
            sigv4::SigningTrace qtrace;
            const auto expires =
                std::chrono::seconds(ctx["expiration_in_seconds"].get_int64().value());
            REQUIRE_FALSE(signer.presign(request, creds, at(stamp), expires, q, &qtrace));
            CHECK(qtrace.canonical_request == read_file(dir / "query-canonical-request.txt"));
            CHECK(qtrace.string_to_sign == read_file(dir / "query-string-to-sign.txt"));
            CHECK(q.signature == read_file(dir / "query-signature.txt"));
            const auto presigned_http =
                parse_http_text(read_file(dir / "query-signed-request.txt"));
            CHECK(split_sorted(q.query) == split_sorted(presigned_http.query));
        }
    }
}

TEST_CASE("legacy aws4_testsuite: header signing, every case") {
    std::vector<fs::path> cases;
    for (const auto& e :
         fs::recursive_directory_iterator(outbox::test::vectors_dir() / "legacy-aws4_testsuite")) {
        if (e.is_regular_file() && e.path().extension() == ".req") cases.push_back(e.path());
    }
    std::sort(cases.begin(), cases.end());
    REQUIRE(cases.size() == 34);
    for (const fs::path& req : cases) {
        const std::string name = req.stem().string();
        DYNAMIC_SECTION(name) {
            auto sibling = [&](const char* ext) {
                return read_file(fs::path(req).replace_extension(ext));
            };
            const SignInputs in = inputs_from(sibling(".req"), true);
            Credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", {}, {}};
            // The token of the session-token cases is only in the signed request (see README).
            creds.session_token =
                header_of(parse_http_text(sibling(".sreq")), "X-Amz-Security-Token");
            const sigv4::Signer signer({.region = "us-east-1",
                                        .service = "service",
                                        .sign_session_token = name != "post-sts-header-after"});
            sigv4::HeaderSignature sig;
            sigv4::SigningTrace trace;
            REQUIRE_FALSE(
                signer.sign_headers(request_of(in), creds, at("20150830T123600Z"), sig, &trace));
            CHECK(trace.canonical_request == sibling(".creq"));
            CHECK(trace.string_to_sign == sibling(".sts"));
            CHECK(sig.authorization == sibling(".authz"));
        }
    }
}
