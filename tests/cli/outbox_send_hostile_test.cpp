// `outbox send` against input, files and servers that misbehave: read errors, closed standard
// input, reports that cannot be written, signals, servers that never answer, answer without
// MD5s, echo secrets, stream without end or close mid-reply. The real program each time,
// with its exit status, report, time and memory checked.
#include "catch.hpp"
#include "program_run.hpp"
#include "test_http_server.hpp"

#include "aws/sqs/sqs_protocol.hpp"

#include <simdjson.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

using outbox::test::ProgramOptions;
using outbox::test::ProgramRun;
using outbox::test::read_lines;
using outbox::test::run_program;
using outbox::test::TempDir;
using outbox::test::TestHttpServer;
using outbox::test::TestReply;
using outbox::test::TestRequest;
using namespace std::chrono_literals;

namespace {

// Under AddressSanitizer or ThreadSanitizer the program's memory is the sanitizer's (shadow
// memory, quarantine): resident-size bounds hold only for a plain build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool memory_is_measurable = false;
#else
constexpr bool memory_is_measurable = true;
#endif

// An SQS JSON-protocol server whose SendMessage(Batch) replies are broken in one chosen way.
class HostileSqs {
  public:
    enum class Lookup { answer, hold, stream_forever };
    enum class Sends {
        answer,           // Successful entries with correct MD5s
        without_md5,      // Successful entries, no MD5OfMessageBody
        unknown_ids,      // Successful entries naming ids that were never sent
        hold,             // never answer
        slow,             // answer after 100 ms
        close_mid_reply,  // half a response, then close
        echo_token,       // 403 SignatureDoesNotMatch quoting the session token
    };

    HostileSqs(Lookup lookup, Sends sends)
        : lookup_(lookup), sends_(sends), server_([this](const TestRequest& r) { return on(r); }) {}

    std::string queue_url() const { return server_.url("/000000000000/hostile"); }
    TestHttpServer& server() { return server_; }
    std::size_t send_requests() const { return send_requests_; }
    // Message ids answered as stored.
    std::set<std::string> acknowledged() const {
        std::lock_guard lock(mutex_);
        return acknowledged_;
    }

  private:
    TestReply on(const TestRequest& r) {
        const std::string action = r.header("X-Amz-Target");
        TestReply reply;
        if (action == "AmazonSQS.GetQueueAttributes") {
            if (lookup_ == Lookup::hold) reply.action = TestReply::Action::hold;
            if (lookup_ == Lookup::stream_forever) {
                reply.action = TestReply::Action::stream_forever;
                reply.raw = "HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n";
            }
            reply.body = R"({"Attributes":{"MaximumMessageSize":"262144"}})";
            return reply;
        }
        ++send_requests_;
        switch (sends_) {
            case Sends::hold:
                reply.action = TestReply::Action::hold;
                return reply;
            case Sends::close_mid_reply:
                reply.action = TestReply::Action::raw;
                reply.raw = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"Successful\":[";
                return reply;
            case Sends::echo_token: {
                // As a JSON writer that escapes '/' would quote it.
                std::string token;
                for (char c : r.header("X-Amz-Security-Token")) {
                    if (c == '/') token += '\\';
                    token += c;
                }
                reply.status = 403;
                reply.body =
                    R"({"__type":"com.amazon.coral.service#SignatureDoesNotMatch",)"
                    R"("message":"The canonical request was POST / x-amz-security-token:)" +
                    token + R"( ..."})";
                return reply;
            }
            default:
                break;
        }
        if (sends_ == Sends::slow) reply.delay = 100ms;
        // Answer every entry of the batch (or the single message).
        simdjson::dom::parser parser;
        const simdjson::padded_string body(r.body);
        simdjson::dom::object request = parser.parse(body);
        const bool batch = action == "AmazonSQS.SendMessageBatch";
        std::string out = batch ? R"({"Successful":[)" : "";
        auto answer = [&](std::string_view id, std::string_view message_body, bool first) {
            const std::string message_id = "m-" + std::to_string(next_id_++);
            std::string entry = batch ? std::string(first ? "" : ",") + R"({"Id":")" +
                                            std::string(sends_ == Sends::unknown_ids ? "99" : id) +
                                            R"(",)"
                                      : "{";
            entry += R"("MessageId":")" + message_id + "\"";
            if (sends_ != Sends::without_md5 && sends_ != Sends::unknown_ids) {
                const auto md5 = outbox::detail::sqs::md5_of_body(message_body);
                entry += R"(,"MD5OfMessageBody":")" + std::string(md5.data(), md5.size()) + "\"";
                std::lock_guard lock(mutex_);
                acknowledged_.insert(message_id);
            }
            out += entry + "}";
        };
        if (batch) {
            bool first = true;
            for (simdjson::dom::object e : request["Entries"].get_array()) {
                answer(std::string_view(e["Id"]), std::string_view(e["MessageBody"]), first);
                first = false;
            }
            out += "]}";
        } else {
            answer("0", std::string_view(request["MessageBody"]), true);
        }
        reply.body = out;
        return reply;
    }

    Lookup lookup_;
    Sends sends_;
    std::atomic<std::size_t> send_requests_{0};
    std::atomic<std::uint64_t> next_id_{1};
    mutable std::mutex mutex_;
    std::set<std::string> acknowledged_;
    TestHttpServer server_;  // last: its threads call on() until it is destroyed
};

const std::vector<std::string> clean_env = {"AWS_SESSION_TOKEN",
                                            "AWS_PROFILE",
                                            "AWS_REGION",
                                            "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL",
                                            "AWS_ENDPOINT_URL_SQS",
                                            "AWS_CA_BUNDLE",
                                            "OUTBOX_DEBUG",
                                            "AWS_WEB_IDENTITY_TOKEN_FILE",
                                            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"};

ProgramOptions with_keys() {
    ProgramOptions o;
    o.unset_env = clean_env;
    o.set_env = {"AWS_ACCESS_KEY_ID=AKIDOUTBOXTEST", "AWS_SECRET_ACCESS_KEY=outbox-test-secret",
                 "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/nonexistent",
                 "AWS_SHARED_CREDENTIALS_FILE=/nonexistent"};
    o.kill_after = 90s;
    return o;
}

std::vector<std::string> send_args(std::vector<std::string> rest) {
    std::vector<std::string> argv = {OUTBOX_CLI_PATH, "send"};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
}

std::string lines(int n, const std::string& prefix = "event") {
    std::string text;
    for (int i = 0; i < n; ++i) text += "{\"" + prefix + "\":" + std::to_string(i) + "}\n";
    return text;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

struct ReportLine {
    std::int64_t index;
    std::int64_t attempts;
    std::string status, error, message_id;
};

// Parses every line; a line cut in half fails the test.
std::vector<ReportLine> parse_report(const std::string& path) {
    std::vector<ReportLine> out;
    simdjson::dom::parser parser;
    for (const std::string& line : read_lines(path)) {
        simdjson::dom::object o;
        INFO(line);
        REQUIRE(parser.parse(line).get_object().get(o) == simdjson::SUCCESS);
        ReportLine r;
        r.index = std::int64_t(o["index"]);
        r.attempts = std::int64_t(o["attempts"]);
        r.status = std::string(std::string_view(o["status"]));
        if (!o["error"].is_null()) r.error = std::string(std::string_view(o["error"]));
        if (!o["message_id"].is_null())
            r.message_id = std::string(std::string_view(o["message_id"]));
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

TEST_CASE("input that cannot be read is an error (exit 2), never the end of input") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    TempDir dir;
    SECTION("a directory") {
        const ProgramRun r =
            run_program(send_args({"--to", sqs.queue_url(), dir.path()}), with_keys());
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot read " + dir.path() + ": it is a directory"));
        CHECK(sqs.server().requests() == 0);
    }
    SECTION("EIO while reading (the start of the process's own memory is unmapped)") {
        const ProgramRun r =
            run_program(send_args({"--to", sqs.queue_url(), "/proc/self/mem"}), with_keys());
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot read /proc/self/mem after 0 lines: Input/output error"));
    }
}

TEST_CASE("a closed standard input is an error at once, not a hang") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    ProgramOptions o = with_keys();
    o.input = ProgramOptions::Input::closed;
    o.kill_after = 20s;
    const ProgramRun r = run_program(send_args({"--to", sqs.queue_url()}), o);
    INFO(r.err);
    CHECK_FALSE(r.killed);
    CHECK(r.status == 2);
    CHECK(contains(r.err, "cannot read standard input: standard input is closed"));
    CHECK(r.elapsed < 10s);
}

TEST_CASE("reports: write errors fail the run, the input is never the report, files are 0600") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(5));
    SECTION("an unreadable AWS_CA_BUNDLE is a usage error") {
        ProgramOptions o = with_keys();
        o.set_env.push_back("AWS_CA_BUNDLE=/nonexistent/bundle.pem");
        const ProgramRun r = run_program(send_args({"--to", sqs.queue_url(), in}), o);
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot load CA file /nonexistent/bundle.pem (AWS_CA_BUNDLE)"));
    }
    SECTION("a full disk") {
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", "/dev/full", in}), with_keys());
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot write the report /dev/full: No space left on device"));
        CHECK(contains(r.err, "delivered 5, failed 0"));  // the messages still went
    }
    SECTION("the report path is the input path: refused before anything is truncated") {
        const ProgramRun r =
            run_program(send_args({"--to", sqs.queue_url(), "--report", in, in}), with_keys());
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "the report " + in + " is the input file"));
        CHECK(read_lines(in).size() == 5);
        CHECK(sqs.server().requests() == 0);
    }
    SECTION("the report is standard input's file") {
        ProgramOptions o = with_keys();
        o.input = ProgramOptions::Input::file;
        o.input_file = in;
        const ProgramRun r = run_program(send_args({"--to", sqs.queue_url(), "--report", in}), o);
        CHECK(r.status == 2);
        CHECK(read_lines(in).size() == 5);
    }
    SECTION("created 0600, and an existing report is made 0600") {
        const std::string report = dir.file("report.jsonl");
        write_file(report, "old\n");
        ::chmod(report.c_str(), 0644);
        const ProgramRun r =
            run_program(send_args({"--to", sqs.queue_url(), "--report", report, in}), with_keys());
        CHECK(r.status == 0);
        struct stat st {};
        REQUIRE(::stat(report.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(parse_report(report).size() == 5);
        const std::string fresh = dir.file("fresh.jsonl");
        REQUIRE(
            run_program(send_args({"--to", sqs.queue_url(), "--report", fresh, in}), with_keys())
                .status == 0);
        REQUIRE(::stat(fresh.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
    }
    SECTION("a reader that went away is a write error, not a silent death by SIGPIPE") {
        ProgramOptions o = with_keys();
        o.output = ProgramOptions::Output::broken_pipe;
        const ProgramRun r = run_program(
            {OUTBOX_CLI_PATH, "presign", "s3://bucket/key", "--region", "eu-west-1"}, o);
        INFO(r.err);
        CHECK(r.signal == 0);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot write standard output: Broken pipe"));
    }
    SECTION("standard output that cannot be written fails the command") {
        ProgramOptions o = with_keys();
        o.output_file = "/dev/full";
        const ProgramRun r = run_program(
            {OUTBOX_CLI_PATH, "presign", "s3://bucket/key", "--region", "eu-west-1"}, o);
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, "cannot write standard output: No space left on device"));
    }
}

TEST_CASE("a line from a pipe that stays open is sent at once, not held for more") {
    TempDir dir;
    const std::string fifo = dir.file("in.fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const std::string report = dir.file("report.jsonl");
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    ProgramOptions o = with_keys();
    bool first_sent = false, second_sent = false;
    o.while_running = [&](pid_t) {
        const int writer = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);  // the program reads it
        REQUIRE(writer >= 0);
        const std::string first = "{\"n\":1}\n", second = "{\"n\":2}\n";
        REQUIRE(::write(writer, first.data(), first.size()) == ssize_t(first.size()));
        // The queue lookup, then the first line's send, while the pipe is still open.
        first_sent = sqs.server().wait_for_requests(2, std::chrono::seconds(30));
        REQUIRE(::write(writer, second.data(), second.size()) == ssize_t(second.size()));
        second_sent = sqs.server().wait_for_requests(3, std::chrono::seconds(30));
        ::close(writer);
    };
    const ProgramRun r =
        run_program(send_args({"--to", sqs.queue_url(), "--report", report, fifo}), o);
    INFO(r.err);
    CHECK(first_sent);
    CHECK(second_sent);
    CHECK(r.status == 0);
    CHECK(parse_report(report).size() == 2);
    CHECK(sqs.acknowledged().size() == 2);
}

TEST_CASE("SIGTERM: no more input, what is in flight finishes, every line whole, exit 143") {
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(20000));
    const std::string report = dir.file("report.jsonl");
    std::chrono::steady_clock::time_point signalled;

    SECTION("a server that answers: everything read is delivered and reported") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::slow);
        ProgramOptions o = with_keys();
        o.while_running = [&](pid_t pid) {
            REQUIRE(sqs.server().wait_for_requests(20, 30s));
            signalled = std::chrono::steady_clock::now();
            ::kill(pid, SIGTERM);
        };
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--grace", "20", in}), o);
        INFO(r.err);
        CHECK(r.status == 128 + SIGTERM);
        CHECK(contains(r.err, "SIGTERM: no more input is read"));
        CHECK(contains(r.err, "stopped by SIGTERM after"));
        const auto report_lines = parse_report(report);
        CHECK(report_lines.size() < 20000);
        CHECK_FALSE(report_lines.empty());
        const auto acked = sqs.acknowledged();
        std::set<std::int64_t> indexes;
        std::size_t delivered = 0;
        for (const auto& l : report_lines) {
            indexes.insert(l.index);
            if (l.status == "delivered") {
                ++delivered;
                CHECK(acked.count(l.message_id) == 1);
            }
        }
        CHECK(indexes.size() == report_lines.size());  // one line per message
        CHECK(delivered == report_lines.size());       // the server answered all in time
        // "after N input lines": lines 0 to N-1 were each sent and reported, none after them.
        const auto after = r.err.find("stopped by SIGTERM after ");
        REQUIRE(after != std::string::npos);
        const std::size_t read = std::stoul(r.err.substr(after + 25));
        CHECK(report_lines.size() == read);
        CHECK(*indexes.rbegin() == static_cast<std::int64_t>(read) - 1);
        CHECK(acked.size() == delivered);  // nothing stored without a line
        CHECK(contains(r.err, "delivered " + std::to_string(delivered) + ", failed 0"));
    }
    SECTION("a server that never answers: the grace period bounds the wait, lines say why") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::hold);
        ProgramOptions o = with_keys();
        o.while_running = [&](pid_t pid) {
            REQUIRE(sqs.server().wait_for_requests(5, 30s));
            signalled = std::chrono::steady_clock::now();
            ::kill(pid, SIGTERM);
        };
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--grace", "1", in}), o);
        const auto exited_after = std::chrono::steady_clock::now() - signalled;
        INFO(r.err);
        CHECK(r.status == 128 + SIGTERM);
        CHECK(exited_after < 6s);
        const auto report_lines = parse_report(report);
        REQUIRE_FALSE(report_lines.empty());
        for (const auto& l : report_lines) {
            CHECK(l.status == "failed");
            CHECK((contains(l.error, "outcome unknown") || contains(l.error, "operation aborted") ||
                   contains(l.error, "Operation canceled")));
        }
        CHECK(contains(r.err, "failed " + std::to_string(report_lines.size())));
    }
}

TEST_CASE("--deadline bounds everything from acceptance to outcome") {
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(20));
    const std::string report = dir.file("report.jsonl");
    SECTION("the queue lookup never answers") {
        HostileSqs sqs(HostileSqs::Lookup::hold, HostileSqs::Sends::answer);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--deadline", "3", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        CHECK(r.elapsed < 7s);
        const auto report_lines = parse_report(report);
        CHECK(report_lines.size() == 20);
        for (const auto& l : report_lines) {
            INFO(l.error);
            CHECK(l.status == "failed");
            CHECK(contains(l.error,
                           "the message deadline (3 s) passed while the queue was being "
                           "looked up"));
        }
    }
    SECTION("the sends never answer") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::hold);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--deadline", "3", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        CHECK(r.elapsed < 7s);
        const auto report_lines = parse_report(report);
        CHECK(report_lines.size() == 20);
        for (const auto& l : report_lines) {
            CHECK(l.status == "failed");
            CHECK(contains(l.error, "outcome unknown"));
            CHECK(contains(l.error, "no complete reply from 127.0.0.1:" +
                                        std::to_string(sqs.server().port())));
        }
    }
}

TEST_CASE("a reply that cannot be verified is no proof of delivery") {
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(3));
    const std::string report = dir.file("report.jsonl");
    SECTION("no MD5OfMessageBody: retried, then outcome unknown") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::without_md5);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--max-attempts", "3", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        for (const auto& l : parse_report(report)) {
            CHECK(l.status == "failed");
            CHECK(l.attempts == 3);
            CHECK(contains(l.error, "outcome unknown"));
            CHECK(contains(l.error, "no MD5OfMessageBody"));
        }
    }
    SECTION("... unless the check is turned off for an emulator") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::without_md5);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--allow-missing-md5", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 0);
        CHECK(parse_report(report).size() == 3);
    }
    SECTION("a reply naming ids that were never sent") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::unknown_ids);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--max-attempts", "2", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        for (const auto& l : parse_report(report)) {
            CHECK(l.status == "failed");
            CHECK(contains(l.error, "outcome unknown"));
        }
    }
    SECTION("a reply cut short by a closed connection") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::close_mid_reply);
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--report", report, "--max-attempts", "2", in}),
            with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        for (const auto& l : parse_report(report)) {
            CHECK(l.attempts == 2);
            CHECK(contains(l.error, "outcome unknown"));
            CHECK(contains(l.error, "the reply from 127.0.0.1:" +
                                        std::to_string(sqs.server().port()) + " was cut short"));
        }
    }
}

TEST_CASE("URLs are parsed strictly: refused with exit 2, nothing connects") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    const std::string port = std::to_string(sqs.server().port());
    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    const std::vector<Case> cases = {
        {{"--to", "http://127.0.0.1:99999/000000000000/q"},
         "port must be a number from 1 to 65535"},
        {{"--to", "http://127.0.0.1:100000/000000000000/q"},
         "port must be a number from 1 to 65535"},
        {{"--to", "http://127.0.0.1.evil.example:" + port + "/000000000000/q"},
         "the host is not a valid host name"},
        {{"--to", sqs.queue_url(), "--endpoint", "http://127.0.0.1.evil.example:" + port},
         "the host is not a valid host name"},
        {{"--to", sqs.queue_url(), "--endpoint", "http://127.0.0.1:99999"},
         "port must be a number from 1 to 65535"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.args);
        auto argv = send_args(c.args);
        const ProgramRun r = run_program(argv, with_keys());
        INFO(r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, c.says));
    }
    CHECK(sqs.server().connections() == 0);
}

TEST_CASE("regions are region names: anything else is refused") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    for (const std::string bad : {"us-east-1/evil", "us-east-1\nHost: x", "US-EAST-1"}) {
        CAPTURE(bad);
        const ProgramRun p = run_program(
            {OUTBOX_CLI_PATH, "presign", "s3://bucket/key", "--region", bad}, with_keys());
        CHECK(p.status == 2);
        CHECK(contains(p.err, "is not a region name"));
        CHECK(p.out.empty());
        const ProgramRun s =
            run_program(send_args({"--to", sqs.queue_url(), "--region", bad}), with_keys());
        CHECK(s.status == 2);
        CHECK(contains(s.err, "is not a region name"));
        ProgramOptions o = with_keys();
        o.set_env.push_back("AWS_REGION=" + bad);
        const ProgramRun e = run_program(send_args({"--to", sqs.queue_url()}), o);
        CHECK(e.status == 2);
        CHECK(contains(e.err, "the region from AWS_REGION"));
    }
    CHECK(sqs.server().requests() == 0);
}

TEST_CASE("profile files that never end, block, or are huge: refused, bounded, named") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
    TempDir dir;
    const std::string fifo = dir.file("fifo"), huge = dir.file("huge");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    {
        std::ofstream f(huge);
        f << "[default]\n";
    }
    std::filesystem::resize_file(huge, 100 * 1024 * 1024);  // sparse: costs no disk
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(2));
    for (const auto& [file, says] : std::vector<std::pair<std::string, std::string>>{
             {"/dev/zero", "it is not a regular file"},
             {fifo, "it is not a regular file"},
             {huge, "it is larger than 1048576 bytes"}}) {
        CAPTURE(file);
        ProgramOptions o = with_keys();
        o.unset_env.push_back("AWS_ACCESS_KEY_ID");
        o.unset_env.push_back("AWS_SECRET_ACCESS_KEY");
        o.set_env = {"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/nonexistent",
                     "AWS_SHARED_CREDENTIALS_FILE=" + file};
        o.kill_after = 30s;
        const ProgramRun r = run_program(send_args({"--to", sqs.queue_url(), in}), o);
        INFO(r.err);
        CHECK_FALSE(r.killed);
        CHECK(r.status == 1);
        CHECK(contains(r.err, "cannot read the AWS profile file " + file + ": " + says));
        if (memory_is_measurable) CHECK(r.max_rss_kib < 100 * 1024);
    }
    CHECK(sqs.server().requests() == 0);
}

TEST_CASE("memory is bounded in bytes, not only in lines") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::hold);
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    {
        std::ofstream f(in, std::ios::binary);
        const std::string body(200 * 1000, 'x');
        for (int i = 0; i < 1000; ++i) f << "\"" << i << body << "\"\n";
    }
    const std::string report = dir.file("report.jsonl");
    const ProgramRun r =
        run_program(send_args({"--to", sqs.queue_url(), "--report", report, "--deadline", "1", in}),
                    with_keys());
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(parse_report(report).size() == 1000);
    // 200 MB of input; the read-ahead holds at most 32 MiB of it.
    if (memory_is_measurable) CHECK(r.max_rss_kib < 150 * 1024);
}

TEST_CASE("a session token echoed by the service never reaches the report or the log") {
    HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::echo_token);
    TempDir dir;
    const std::string in = dir.file("in.jsonl");
    write_file(in, lines(2));
    const std::string report = dir.file("report.jsonl");
    ProgramOptions o = with_keys();
    const std::string token = "IQoJb3JpZ2luX2Vj/EXAMPLE+SESSION/TOKEN0123456789==";
    o.set_env.push_back("AWS_SESSION_TOKEN=" + token);
    o.set_env.push_back("OUTBOX_DEBUG=1");
    const ProgramRun r =
        run_program(send_args({"--to", sqs.queue_url(), "--report", report, in}), o);
    INFO(r.err);
    CHECK(r.status == 1);
    REQUIRE(sqs.send_requests() > 0);
    const auto received = sqs.server().received();
    CHECK(received.back().header("X-Amz-Security-Token") == token);  // it was sent
    std::string report_text;
    for (const auto& l : read_lines(report)) report_text += l + "\n";
    CHECK_FALSE(contains(report_text, token));
    CHECK_FALSE(contains(r.err, token));
    CHECK_FALSE(contains(report_text, "SESSION"));  // no part of it, escaped or not
    CHECK_FALSE(contains(r.err, "SESSION"));
    CHECK(contains(report_text, "x-amz-security-token:[redacted]"));
}

TEST_CASE("errors say what is wrong and where") {
    TempDir dir;
    const std::string report = dir.file("report.jsonl");
    SECTION("--objects lines: BOM, lone surrogate, out-of-range number, invalid UTF-8") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
        const std::string in = dir.file("in.jsonl");
        write_file(in,
                   "\xEF\xBB\xBF{\"body\":\"bom\"}\n"
                   "{\"body\":\"\\ud800 alone\"}\n"
                   "{\"body\":\"n\",\"delay\":1e400}\n"
                   "{\"body\":\"caf\xC3\x28\"}\n"
                   "[\"an array\"]\n"
                   "{\"body\":\"fine\"}\n");
        const ProgramRun r = run_program(
            send_args({"--objects", "--to", sqs.queue_url(), "--report", report, in}), with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        std::map<std::int64_t, std::string> errors;
        for (const auto& l : parse_report(report)) errors[l.index] = l.error;
        CHECK(contains(errors[0], "line 1: the line starts with a UTF-8 byte order mark"));
        CHECK(contains(errors[1], "line 2: a string has an invalid escape: a lone surrogate"));
        CHECK(contains(errors[2], "line 3: a number is malformed or out of range"));
        CHECK(contains(errors[3], "line 4: invalid UTF-8 at byte 12"));
        CHECK(contains(errors[4], "line 5: not a JSON object"));
        CHECK(errors[5].empty());
    }
    SECTION("a refused connection names host and port") {
        std::string url;
        {
            HostileSqs gone(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
            url = gone.queue_url();
        }
        const std::string in = dir.file("in.jsonl");
        write_file(in, lines(1));
        const std::string port = url.substr(17, url.find('/', 17) - 17);
        const ProgramRun r =
            run_program(send_args({"--to", url, "--max-attempts", "1", in}), with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        CHECK(contains(r.err, "cannot connect to 127.0.0.1:" + port + ": Connection refused"));
        CHECK_FALSE(contains(r.err, "transport:"));
    }
    SECTION("no credentials: the sources tried, no transport prefix") {
        HostileSqs sqs(HostileSqs::Lookup::answer, HostileSqs::Sends::answer);
        const std::string in = dir.file("in.jsonl");
        write_file(in, lines(1));
        ProgramOptions o = with_keys();
        o.unset_env.push_back("AWS_ACCESS_KEY_ID");
        o.unset_env.push_back("AWS_SECRET_ACCESS_KEY");
        o.set_env = {"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/nonexistent",
                     "AWS_SHARED_CREDENTIALS_FILE=/nonexistent"};
        const ProgramRun r = run_program(send_args({"--to", sqs.queue_url(), in}), o);
        INFO(r.err);
        CHECK(r.status == 1);
        CHECK(contains(r.err,
                       "no AWS credentials found; tried environment, web identity, profile "
                       "\"default\", container, instance metadata"));
        CHECK_FALSE(contains(r.err, "transport:"));
    }
    SECTION("a reply that streams without end is refused, in bounded memory") {
        HostileSqs sqs(HostileSqs::Lookup::stream_forever, HostileSqs::Sends::close_mid_reply);
        const std::string in = dir.file("in.jsonl");
        write_file(in, lines(1));
        const ProgramRun r = run_program(
            send_args({"--to", sqs.queue_url(), "--max-attempts", "1", in}), with_keys());
        INFO(r.err);
        CHECK(r.status == 1);
        if (memory_is_measurable) CHECK(r.max_rss_kib < 100 * 1024);
    }
}
