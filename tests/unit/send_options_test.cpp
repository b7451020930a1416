// `outbox send`'s arguments, parsed without a process: what each option sets, and what each
// mistake is told.
#include "send_options.hpp"

#include "catch.hpp"

#include <string>
#include <vector>

using outbox::cli::parse_send_options;
using outbox::cli::SendOptions;
using outbox::cli::SendParse;

namespace {

struct Parsed {
    SendParse result;
    SendOptions options;
    std::string error;
};

Parsed parse(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    Parsed p{};
    p.result = parse_send_options(static_cast<int>(argv.size()), argv.data(), p.options, p.error);
    return p;
}

const std::string queue = "http://127.0.0.1:4566/000000000000/orders";

}  // namespace

TEST_CASE("send: the fewest arguments read standard input with the defaults") {
    const auto p = parse({"--to", queue});
    REQUIRE(p.result == SendParse::run);
    CHECK(p.options.to == queue);
    CHECK(p.options.input == "-");
    CHECK(p.options.report_path.empty());
    CHECK_FALSE(p.options.objects);
    CHECK_FALSE(p.options.print_stats);
    CHECK(p.options.grace_seconds == 10);
    CHECK(p.error.empty());
}

TEST_CASE("send: each option lands in its field, delivery options included") {
    const auto p = parse({"--objects", "--report", "r.jsonl", "--to", queue, "--stats", "--grace",
                          "0", "--endpoint", "http://127.0.0.1:9", "--max-attempts", "3",
                          "--deadline", "20", "events.jsonl"});
    REQUIRE(p.result == SendParse::run);
    CHECK(p.options.objects);
    CHECK(p.options.print_stats);
    CHECK(p.options.report_path == "r.jsonl");
    CHECK(p.options.grace_seconds == 0);
    CHECK(p.options.input == "events.jsonl");
    CHECK(p.options.delivery.endpoint == "http://127.0.0.1:9");
    CHECK(p.options.delivery.max_attempts == 3);
    CHECK(p.options.delivery.deadline_seconds == 20);
}

TEST_CASE("send: --help asks for the usage, wherever it is") {
    CHECK(parse({"--help"}).result == SendParse::help);
    CHECK(parse({"--to", queue, "-h"}).result == SendParse::help);
}

TEST_CASE("send: each mistake is a usage error that names it") {
    struct Case {
        std::vector<std::string> args;
        std::string said;
    };
    const std::vector<Case> cases = {
        {{}, "missing --to QUEUE_URL"},
        {{"--to"}, "--to needs a queue URL"},
        {{"--to", queue, "--report"}, "--report needs a file name"},
        {{"--to", queue, "a", "b"}, "more than one input file"},
        {{"--to", queue, "--grace", "3601"}, "--grace must be 0 to 3600 seconds"},
        {{"--to", queue, "--grace", "-1"}, "--grace must be 0 to 3600 seconds"},
        {{"--to", queue, "--grace", "5s"}, "--grace must be 0 to 3600 seconds"},
        {{"--to", queue, "--grace", ""}, "--grace must be 0 to 3600 seconds"},
        {{"--to", queue, "--frobnicate"}, "unknown option --frobnicate"},
        {{"--to", queue, "--max-attempts", "0"}, "--max-attempts"},
        {{"--to", queue, "--plaintext"}, "are for kafka://"},
    };
    for (const auto& c : cases) {
        INFO("arguments: " << c.args.size() << (c.args.empty() ? "" : ", first " + c.args[0]));
        const auto p = parse(c.args);
        CHECK(p.result == SendParse::usage_error);
        CHECK_THAT(p.error, Catch::Contains(c.said));
        CHECK(p.error.rfind("send: ", 0) == 0);
    }
}

TEST_CASE("send: a Kafka target takes the Kafka options and refuses the SQS ones") {
    const auto ok = parse({"--to", "kafka://127.0.0.1:9092/events", "--plaintext"});
    REQUIRE(ok.result == SendParse::run);
    CHECK(ok.options.delivery.plaintext);
    const auto bad = parse({"--to", "kafka://127.0.0.1:9092/events", "--region", "eu-west-1"});
    CHECK(bad.result == SendParse::usage_error);
    CHECK_THAT(bad.error, Catch::Contains("--region"));
}
