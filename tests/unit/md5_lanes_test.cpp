// MD5 in SIMD lanes against OpenSSL's, one input at a time: RFC 1321's vectors, every length
// across the padding's edges, and random batches of mixed lengths; along every path this CPU
// can take (AVX-512, AVX2), not only the fastest.
#include "catch.hpp"

#include "core/md5_lanes.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using outbox::detail::Md5Digest;
using outbox::detail::Md5Path;

namespace {

std::string hex(const Md5Digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : d) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

// What each digest holds before a path runs: a path that left one unwritten must not pass on the
// previous path's result.
const Md5Digest poison = [] {
    Md5Digest d;
    d.fill(0xff);
    return d;
}();

const char* name(Md5Path path) {
    return path == Md5Path::avx512 ? "AVX-512" : path == Md5Path::avx2 ? "AVX2" : "OpenSSL";
}

// The SIMD paths this CPU can take.
std::vector<Md5Path> lane_paths() {
    std::vector<Md5Path> paths;
    for (Md5Path p : {Md5Path::avx2, Md5Path::avx512})
        if (outbox::detail::md5_path_available(p)) paths.push_back(p);
    return paths;
}

// Every lane path and the reference agree on `inputs`; so does md5_many.
void check_same(const std::vector<std::string>& inputs) {
    std::vector<std::string_view> views(inputs.begin(), inputs.end());
    std::vector<Md5Digest> lanes(views.size()), reference(views.size());
    outbox::detail::md5_one_by_one(views, reference);
    std::vector<Md5Path> paths = lane_paths();
    paths.push_back(outbox::detail::md5_best_path());
    for (Md5Path path : paths) {
        std::fill(lanes.begin(), lanes.end(), poison);
        outbox::detail::md5_many_on(path, views, lanes);
        for (std::size_t i = 0; i < views.size(); ++i) {
            INFO(name(path) << ": input " << i << " of " << views.size() << ", " << views[i].size()
                            << " bytes");
            CHECK(hex(lanes[i]) == hex(reference[i]));
        }
    }
}

}  // namespace

TEST_CASE("MD5 lanes: this machine's CPU takes the widest path it has") {
    // The build machine has AVX-512: a path that silently fell back would go untested.
    INFO("fastest path on this CPU: " << name(outbox::detail::md5_best_path()));
    CHECK(outbox::detail::md5_path_available(Md5Path::openssl));
    if (!outbox::detail::md5_path_available(Md5Path::avx512))
        WARN("this CPU has no AVX-512: the sixteen-lane path is not tested here");
    if (std::getenv("OUTBOX_MD5_LANES") != nullptr) return;  // capped on purpose
    if (__builtin_cpu_supports("avx512f"))
        CHECK(outbox::detail::md5_best_path() == Md5Path::avx512);
    else if (__builtin_cpu_supports("avx2"))
        CHECK(outbox::detail::md5_best_path() == Md5Path::avx2);
    else
        CHECK(outbox::detail::md5_best_path() == Md5Path::openssl);
}

TEST_CASE("MD5 lanes: the lane width is the best path's") {
    const auto width = outbox::detail::md5_lane_width();
    switch (outbox::detail::md5_best_path()) {
        case Md5Path::avx512:
            CHECK(width == 16);
            break;
        case Md5Path::avx2:
            CHECK(width == 8);
            break;
        case Md5Path::openssl:
            CHECK(width == 1);
            break;
    }
}

TEST_CASE("MD5 lanes: RFC 1321's test suite, eight at once") {
    INFO("fastest path on this CPU: " << name(outbox::detail::md5_best_path()));
    const std::vector<std::pair<std::string, std::string>> suite = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    std::vector<std::string_view> inputs;
    for (const auto& [text, digest] : suite) inputs.push_back(text);
    inputs.push_back("a");  // an eighth lane
    std::vector<Md5Digest> out(inputs.size());
    for (Md5Path path : lane_paths()) {
        INFO(name(path));
        std::fill(out.begin(), out.end(), poison);
        outbox::detail::md5_many_on(path, inputs, out);
        for (std::size_t i = 0; i < suite.size(); ++i) CHECK(hex(out[i]) == suite[i].second);
        CHECK(hex(out[7]) == suite[1].second);
    }
}

TEST_CASE("MD5 lanes: every length from 0 to 300 bytes, in batches of each size up to 40") {
    std::mt19937 random(1321);
    std::vector<std::string> all;
    for (std::size_t n = 0; n <= 300; ++n) {
        std::string s(n, '\0');
        for (char& c : s) c = static_cast<char>(random());
        all.push_back(std::move(s));
    }
    for (std::size_t batch = 1; batch <= 40; ++batch)
        for (std::size_t first = 0; first + batch <= all.size(); first += batch)
            check_same({all.begin() + static_cast<std::ptrdiff_t>(first),
                        all.begin() + static_cast<std::ptrdiff_t>(first + batch)});
}

TEST_CASE("MD5 lanes: mixed lengths in one batch, one of them long") {
    std::mt19937 random(42);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::string> inputs(1 + random() % 20);
        for (auto& s : inputs) {
            s.resize(random() % 3 == 0 ? random() % 70000 : random() % 2048);
            for (char& c : s) c = static_cast<char>(random());
        }
        check_same(inputs);
    }
}

TEST_CASE("MD5 lanes: OUTBOX_MD5_LANES caps the path; other values leave the fastest") {
    using outbox::detail::md5_path_capped;
    const Md5Path fastest = md5_path_capped("");
    CHECK(fastest == (__builtin_cpu_supports("avx512f") ? Md5Path::avx512
                      : __builtin_cpu_supports("avx2")  ? Md5Path::avx2
                                                        : Md5Path::openssl));
    CHECK(md5_path_capped("openssl") == Md5Path::openssl);
    CHECK(md5_path_capped("avx2") ==
          (__builtin_cpu_supports("avx2") ? Md5Path::avx2 : Md5Path::openssl));
    for (const char* unknown : {"avx512", "AVX2", "sse", " avx2"}) {
        INFO(unknown);
        CHECK(md5_path_capped(unknown) == fastest);
    }
}

// ctest runs this once more with OUTBOX_MD5_LANES=avx2 and once with an unknown value.
TEST_CASE("MD5 lanes: the OUTBOX_MD5_LANES this process started with", "[setting]") {
    const char* env = std::getenv("OUTBOX_MD5_LANES");
    const std::string setting = env != nullptr ? env : "";
    INFO("OUTBOX_MD5_LANES=\"" << setting << "\"");
    CHECK(outbox::detail::md5_best_path() == outbox::detail::md5_path_capped(setting));
    const bool known = setting == "avx2" || setting == "openssl";
    CHECK(outbox::detail::md5_lanes_ignored_setting() == (known ? "" : setting));

    // An SQS destination says so when the setting is ignored, and is silent otherwise.
    boost::asio::io_context io;
    std::vector<std::string> warnings;
    outbox::SqsDestinationConfig config;
    config.queue_url = "http://127.0.0.1:9/000000000000/q";
    config.region = "us-east-1";
    config.credentials = outbox::make_static_credentials(io.get_executor(), {"AK", "SK"});
    config.logger.level = outbox::LogLevel::warning;
    config.logger.sink = [&](outbox::LogLevel, std::string_view m) { warnings.emplace_back(m); };
    outbox::SqsDestination destination(io.get_executor(), std::move(config));
    const auto named = std::count_if(warnings.begin(), warnings.end(), [](const std::string& w) {
        return w.find("OUTBOX_MD5_LANES") != std::string::npos;
    });
    CHECK(named == (known || setting.empty() ? 0 : 1));
}
