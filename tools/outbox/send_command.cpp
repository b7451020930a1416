#include "send_command.hpp"

#include "cli_io.hpp"
#include "line_reader.hpp"

#include <outbox/credentials_providers.hpp>
#include <outbox/detail/aws_environment.hpp>
#include <outbox/detail/json_writer.hpp>
#include <outbox/sqs_destination.hpp>
#if OUTBOX_WITH_KAFKA
#include <outbox/kafka_destination.hpp>
#endif

#include <simdjson.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

namespace outbox::cli {
namespace {

namespace asio = boost::asio;

constexpr std::string_view usage =
    "usage: outbox send --to QUEUE_URL [--endpoint URL] [--region R] [--objects]\n"
    "                   [--report FILE] [--max-attempts N] [--deadline SECONDS]\n"
    "                   [--grace SECONDS] [--allow-missing-md5]\n"
    "                   [--stage s3://BUCKET/PREFIX [--s3-endpoint URL] [--s3-region R]\n"
    "                    [--stage-always | --stage-threshold BYTES] [--url-expires SECONDS]]\n"
    "                   [--envelope raw|cloudevents] [--stats]\n"
    "                   [FILE|-]\n"
    "       outbox send --to kafka://HOST:PORT[,HOST:PORT...]/TOPIC\n"
    "                   [--sasl-user U --sasl-password-file F] [--tls-ca FILE] [--plaintext]\n"
    "                   [same input, report and staging options]\n"
    "Sends JSON Lines (from FILE or standard input): each line is one message body, or with\n"
    "--objects an object {\"body\": \"...\", \"group_id\": \"...\", \"dedup_id\": \"...\",\n"
    "\"attributes\": {\"name\": \"text\" | {\"type\": \"Number\", \"value\": \"42\"}}, \"delay\": "
    "SECONDS}.\n"
    "QUEUE_URL: https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or a local emulator's URL.\n"
    "Kafka: SASL PLAIN over TLS with --sasl-user (the password is read from the file, never\n"
    "from the command line); TLS without SASL otherwise; --plaintext drops TLS (local\n"
    "brokers). --tls-ca trusts that CA instead of the system's. Group ids become no key:\n"
    "partitions are balanced by bytes.\n"
    "--endpoint sends the requests elsewhere (an emulator, a VPC endpoint; default\n"
    "AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, the profile's endpoint_url). The region comes\n"
    "from --region, the queue URL, AWS_REGION, AWS_DEFAULT_REGION, the profile, else us-east-1.\n"
    "Credentials come from the default chain (environment, web identity, profiles,\n"
    "container, instance metadata). --report FILE writes one JSON line per input line:\n"
    "{\"index\", \"status\": \"delivered\"|\"failed\", \"message_id\", \"attempts\", \"error\"},\n"
    "plus \"partition\" and \"offset\" for Kafka and \"staged_url\" for a staged message.\n"
    "--deadline bounds each message's time from acceptance to its outcome, queue lookup and\n"
    "requests included (default 300). On SIGINT or SIGTERM no more input is read; messages in\n"
    "flight get --grace seconds (default 10) to finish, then fail; every one gets its report\n"
    "line. The report is created with mode 0600 (it may hold pre-signed URLs).\n"
    "--allow-missing-md5 accepts SQS replies without MD5 digests (some emulators omit them).\n"
    "--stage uploads bodies over the queue's limit (every body with --stage-always) to S3\n"
    "and sends {\"status\":\"success\",\"type\":\"s3_payload\",\"url\":...,\"expires_in\":...}\n"
    "instead (over BYTES with --stage-threshold); --url-expires sets the URL's lifetime (default "
    "600, 1 to 604800). --s3-endpoint\n"
    "addresses a local S3 path-style. --envelope cloudevents wraps each message in a\n"
    "CloudEvents 1.0 JSON event (source \"outbox\", type \"outbox.message\").\n"
    "--stats prints the destination's counters and latency percentiles at the end.\n"
    "Exit status: 0 all delivered, 1 any failed, 2 usage, input or report error (what was\n"
    "read is still delivered or failed), 128+N stopped by signal N. OUTBOX_DEBUG=1 logs.\n";

// Why simdjson refused a line, in words that say what to fix.
std::string json_refusal(simdjson::error_code err, std::string_view line) {
    using namespace simdjson;
    switch (err) {
        case UTF8_ERROR: {
            std::size_t i = 0;  // the first invalid sequence: a slow path on bad input only
            while (i < line.size()) {
                const auto b = static_cast<unsigned char>(line[i]);
                const std::size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
                if (i + len > line.size() || !validate_utf8(line.data() + i, len)) break;
                i += len;
            }
            return "invalid UTF-8 at byte " + std::to_string(i);
        }
        case STRING_ERROR:
            return "a string has an invalid escape: a lone surrogate (\\ud800 to \\udfff "
                   "without its pair) or an unknown escape";
        case UNESCAPED_CHARS:
            return "a string contains an unescaped control character";
        case UNCLOSED_STRING:
            return "a string is not closed";
        case NUMBER_ERROR:
        case NUMBER_OUT_OF_RANGE:
            return "a number is malformed or out of range";
        case EMPTY:
            return "the line is empty";
        default:
            return std::string("not valid JSON (") + error_message(err) + ")";
    }
}

// One --objects line into a Message. False with `why` when it is not one.
bool parse_object_line(simdjson::dom::parser& parser, std::string_view line, Message& m,
                       std::string& why) {
    using namespace simdjson;
    if (line.starts_with("\xEF\xBB\xBF")) {
        why = "the line starts with a UTF-8 byte order mark (remove it)";
        return false;
    }
    const padded_string padded(line);
    dom::element root;
    if (auto err = parser.parse(padded).get(root); err != SUCCESS) {
        why = json_refusal(err, line);
        return false;
    }
    dom::object obj;
    if (root.get_object().get(obj) != SUCCESS) {
        why = "not a JSON object";
        return false;
    }
    std::string_view s;
    if (obj["body"].get_string().get(s) != SUCCESS) {
        why = "field \"body\" must be a string";
        return false;
    }
    m.body = std::string(s);
    for (auto [key, field] :
         {std::pair{"group_id", &m.group_id}, std::pair{"dedup_id", &m.deduplication_id}}) {
        auto v = obj[key];
        if (v.error() == NO_SUCH_FIELD || v.is_null()) continue;
        if (v.get_string().get(s) != SUCCESS) {
            why = std::string("field \"") + key + "\" must be a string";
            return false;
        }
        *field = std::string(s);
    }
    if (auto d = obj["delay"]; d.error() != NO_SUCH_FIELD) {
        int64_t seconds = 0;
        if (d.get_int64().get(seconds) != SUCCESS) {
            why = "field \"delay\" must be a whole number of seconds";
            return false;
        }
        m.delay = std::chrono::seconds(seconds);
    }
    if (auto a = obj["attributes"]; a.error() != NO_SUCH_FIELD) {
        dom::object attributes;
        if (a.get_object().get(attributes) != SUCCESS) {
            why = "field \"attributes\" must be an object";
            return false;
        }
        for (auto [name, value] : attributes) {
            MessageAttribute attr;
            attr.name = std::string(name);
            if (value.get_string().get(s) == SUCCESS) {
                attr.value = std::string(s);
            } else if (value.is_number()) {
                attr.data_type = "Number";
                attr.value = simdjson::minify(value);
            } else {
                dom::object typed;
                std::string_view type, text;
                if (value.get_object().get(typed) != SUCCESS ||
                    typed["type"].get_string().get(type) != SUCCESS ||
                    typed["value"].get_string().get(text) != SUCCESS) {
                    why = "attribute \"" + attr.name +
                          "\" must be a string, a number or {\"type\": ..., \"value\": \"...\"}";
                    return false;
                }
                attr.data_type = std::string(type);
                attr.value = std::string(text);
            }
            m.attributes.push_back(std::move(attr));
        }
    }
    return true;
}

std::string describe(const boost::system::error_code& ec, const Receipt& r) {
    std::string text = ec.message();
    if (!r.diagnostics.code.empty() &&
        r.diagnostics.message.find(r.diagnostics.code) == std::string::npos)
        text += " (" + r.diagnostics.code + ")";
    if (!r.diagnostics.message.empty()) text += ": " + r.diagnostics.message;
    return text;
}

// The report file: whole lines, created 0600 (lines may hold pre-signed URLs), and every
// write error remembered so the run can fail with it.
class ReportFile {
  public:
    ~ReportFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    bool open(const std::string& path, std::string& why) {
        path_ = path;
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd_ < 0) {
            why = std::strerror(errno);
            return false;
        }
        struct stat st {};
        if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
            ::fchmod(fd_, 0600);  // an existing report gets the same protection as a new one
        return true;
    }
    bool is_open() const noexcept { return fd_ >= 0; }

    void write_line(std::string_view line) {
        if (fd_ < 0 || failed()) return;
        buffer_.append(line);
        if (buffer_.size() >= 64 * 1024) flush();
    }

    bool flush() {
        std::size_t done = 0;
        while (done < buffer_.size() && !failed()) {
            const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                error_ = std::strerror(errno);
            else
                done += static_cast<std::size_t>(n);
        }
        buffer_.clear();
        return !failed();
    }

    // Flushes and closes; false when any line did not make it to the file.
    bool close() {
        if (fd_ < 0) return !failed();
        flush();
        if (::close(fd_) != 0 && !failed()) error_ = std::strerror(errno);
        fd_ = -1;
        return !failed();
    }

    bool failed() const noexcept { return !error_.empty(); }
    std::string error() const { return "cannot write the report " + path_ + ": " + error_; }

  private:
    int fd_ = -1;
    std::string path_;
    std::string buffer_;
    std::string error_;
};

// Report lines and the final counts; only touched on the I/O thread.
struct Outcome {
    ReportFile report;
    std::atomic<bool> report_failed{false};  // read by the input loop
    std::uint64_t delivered = 0, failed = 0;

    std::string first_failure;

    void record(std::uint64_t index, const boost::system::error_code& ec, const Receipt& r) {
        (ec ? failed : delivered) += 1;
        if (ec && first_failure.empty()) first_failure = describe(ec, r);
        if (!report.is_open()) return;
        std::string line = "{\"index\":" + std::to_string(index) + ",\"status\":";
        line += ec ? "\"failed\"" : "\"delivered\"";
        line += ",\"message_id\":";
        if (ec || r.message_id.empty())  // Kafka has partition and offset instead
            line += "null";
        else
            detail::append_json_string(line, r.message_id);
        line += ",\"attempts\":" + std::to_string(r.attempts);
        if (!ec && r.partition >= 0)
            line += ",\"partition\":" + std::to_string(r.partition) +
                    ",\"offset\":" + std::to_string(r.offset);
        if (!r.staged_url.empty()) {
            line += ",\"staged_url\":";
            detail::append_json_string(line, r.staged_url);
        }
        line += ",\"error\":";
        if (!ec) {
            line += "null";
        } else {
            detail::append_json_string(line, describe(ec, r));
        }
        line += "}\n";
        report.write_line(line);
        if (report.failed()) report_failed = true;
    }
};

// True when both name the same file (so writing one would truncate the other).
bool same_file(int fd, const std::string& path) {
    struct stat a {
    }, b{};
    return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace

int run_send(int argc, char** argv) {
    std::string to, endpoint, region, report_path, input = "-";
    bool objects = false, input_given = false, stage_always = false, print_stats = false;
    std::string stage, s3_endpoint, s3_region, envelope = "raw";
    long long url_expires = 600;
    std::uint32_t max_attempts = 0;
    long long deadline_seconds = 0;
    long long grace_seconds = 10;
    bool allow_missing_md5 = false;
    std::size_t stage_threshold = 0;
    std::string sasl_user, sasl_password_file, tls_ca;
    bool plaintext = false;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        // The option's value as a whole number within [lo, hi].
        auto number = [&](long long lo, long long hi, long long& into) {
            std::string v;
            if (!value(v) || v.empty()) return false;
            char* end = nullptr;
            errno = 0;
            const long long n = std::strtoll(v.c_str(), &end, 10);
            if (*end != '\0' || errno == ERANGE || n < lo || n > hi) return false;
            into = n;
            return true;
        };
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "--to") {
            if (!value(to)) return usage_error("send: --to needs a queue URL");
        } else if (a == "--endpoint") {
            if (!value(endpoint)) return usage_error("send: --endpoint needs a URL");
        } else if (a == "--region") {
            if (!value(region) || region.empty())
                return usage_error("send: --region needs a value");
        } else if (a == "--report") {
            if (!value(report_path)) return usage_error("send: --report needs a file name");
        } else if (a == "--stage") {
            if (!value(stage) || !stage.starts_with("s3://") || stage.size() <= 5)
                return usage_error("send: --stage needs s3://BUCKET[/PREFIX]");
        } else if (a == "--s3-endpoint") {
            if (!value(s3_endpoint)) return usage_error("send: --s3-endpoint needs a URL");
        } else if (a == "--s3-region") {
            if (!value(s3_region) || s3_region.empty())
                return usage_error("send: --s3-region needs a value");
        } else if (a == "--stage-threshold") {
            long long n = 0;
            if (!number(1, 1LL << 40, n))
                return usage_error("send: --stage-threshold needs a number of bytes");
            stage_threshold = static_cast<std::size_t>(n);
        } else if (a == "--stats") {
            print_stats = true;
        } else if (a == "--stage-always") {
            stage_always = true;
        } else if (a == "--url-expires") {
            if (!number(1, 604800, url_expires))
                return usage_error("send: --url-expires must be 1 to 604800 seconds");
        } else if (a == "--envelope") {
            if (!value(envelope) || (envelope != "raw" && envelope != "cloudevents"))
                return usage_error("send: --envelope must be raw or cloudevents");
        } else if (a == "--deadline") {
            if (!number(1, 86400, deadline_seconds))
                return usage_error("send: --deadline must be 1 to 86400 seconds");
        } else if (a == "--grace") {
            if (!number(0, 3600, grace_seconds))
                return usage_error("send: --grace must be 0 to 3600 seconds");
        } else if (a == "--allow-missing-md5") {
            allow_missing_md5 = true;
        } else if (a == "--sasl-user") {
            if (!value(sasl_user) || sasl_user.empty())
                return usage_error("send: --sasl-user needs a user name");
        } else if (a == "--sasl-password-file") {
            if (!value(sasl_password_file))
                return usage_error("send: --sasl-password-file needs a file");
        } else if (a == "--tls-ca") {
            if (!value(tls_ca)) return usage_error("send: --tls-ca needs a PEM file");
        } else if (a == "--plaintext") {
            plaintext = true;
        } else if (a == "--objects") {
            objects = true;
        } else if (a == "--max-attempts") {
            long long n = 0;
            if (!number(1, 1000, n))
                return usage_error("send: --max-attempts needs a number from 1 to 1000");
            max_attempts = static_cast<std::uint32_t>(n);
        } else if (a.size() > 1 && a.front() == '-') {
            return usage_error("send: unknown option " + std::string(a) + "\n" +
                               std::string(usage));
        } else if (!input_given) {
            input = a;
            input_given = true;
        } else {
            return usage_error("send: more than one input file");
        }
    }
    if (to.empty()) return usage_error("send: missing --to QUEUE_URL\n" + std::string(usage));
    const bool to_kafka = to.starts_with("kafka://");
    if (to_kafka && (!endpoint.empty() || !region.empty() || allow_missing_md5))
        return usage_error("send: --endpoint, --region and --allow-missing-md5 are for SQS queues");
    if (!to_kafka &&
        (!sasl_user.empty() || !sasl_password_file.empty() || !tls_ca.empty() || plaintext))
        return usage_error(
            "send: --sasl-user, --sasl-password-file, --tls-ca and --plaintext are for kafka://");
    if (sasl_user.empty() != sasl_password_file.empty())
        return usage_error("send: --sasl-user and --sasl-password-file go together");

    const Logger logger = env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug) : Logger{};
    asio::io_context io;
    RetryPolicy retry;
    if (max_attempts != 0) retry.max_attempts = max_attempts;
    if (deadline_seconds != 0) retry.message_deadline = std::chrono::seconds(deadline_seconds);
    CloudEventAttributes cloudevents;
    if (envelope == "cloudevents") {
        cloudevents.source = "outbox";
        cloudevents.type = "outbox.message";
    }
    // Credentials for SQS and for S3 staging; looked up on first use.
    CredentialsProviderPtr credentials;
    if (!to_kafka || !stage.empty()) {
        DefaultCredentialsOptions credentials_options;
        // Unreadable profile files are reported even without OUTBOX_DEBUG.
        credentials_options.logger = logger.sink ? logger : stderr_logger(LogLevel::error);
        try {
            credentials = make_default_credentials(io.get_executor(), credentials_options);
        } catch (const std::invalid_argument& e) {  // an unreadable AWS_CA_BUNDLE
            return usage_error(std::string("send: ") + e.what());
        }
    }
    if ((stage_always || stage_threshold || !s3_endpoint.empty() || !s3_region.empty()) &&
        stage.empty())
        return usage_error(
            "send: --stage-always, --stage-threshold, --s3-endpoint and --s3-region need --stage");
    PayloadStagerPtr stager;
    if (!stage.empty()) {
        const std::string rest = stage.substr(5);
        PayloadStagerConfig s3;
        s3.bucket = rest.substr(0, rest.find('/'));
        s3.prefix =
            rest.find('/') == std::string::npos ? std::string() : rest.substr(rest.find('/') + 1);
        while (!s3.prefix.empty() && s3.prefix.back() == '/') s3.prefix.pop_back();
        s3.endpoint = s3_endpoint;
        s3.region = s3_region;
        if (s3.region.empty()) {
            try {
                s3.region = detail::region_from_environment().value;
            } catch (const std::invalid_argument& e) {
                return usage_error(std::string("send: ") + e.what());
            }
        }
        if (s3.region.empty()) s3.region = "us-east-1";
        s3.credentials = credentials;
        s3.url_expires = std::chrono::seconds(url_expires);
        s3.logger = logger;
        s3.http.logger = logger;
        if (max_attempts != 0) s3.retry.max_attempts = max_attempts;
        try {
            stager = std::make_shared<PayloadStager>(io.get_executor(), s3);
        } catch (const std::invalid_argument& e) {
            return usage_error(std::string("send: --stage: ") + e.what());
        }
    }
    const StagingPolicy staging =
        stage_always ? StagingPolicy::always : StagingPolicy::over_threshold;

    std::unique_ptr<Destination> destination;
    if (to_kafka) {
#if OUTBOX_WITH_KAFKA
        KafkaDestinationConfig config;
        const std::string rest = to.substr(8);
        const auto slash = rest.find('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size())
            return usage_error("send: --to kafka://HOST:PORT[,HOST:PORT...]/TOPIC");
        config.bootstrap_servers = rest.substr(0, slash);
        config.topic = rest.substr(slash + 1);
        if (!sasl_user.empty()) {
            std::ifstream secret(sasl_password_file, std::ios::binary);
            if (!secret) return usage_error("send: cannot read " + sasl_password_file);
            std::getline(secret, config.sasl_password);
            if (!config.sasl_password.empty() && config.sasl_password.back() == '\r')
                config.sasl_password.pop_back();
            config.sasl_username = sasl_user;
            config.security = plaintext ? KafkaSecurity::sasl_plaintext : KafkaSecurity::sasl_ssl;
        } else {
            config.security = plaintext ? KafkaSecurity::plaintext : KafkaSecurity::ssl;
        }
        config.tls.ca_file = tls_ca;
        config.retry = retry;
        config.stager = stager;
        config.staging = staging;
        config.staging_threshold = stage_threshold;
        config.envelope = envelope == "cloudevents" ? Envelope::cloudevents : Envelope::raw;
        config.cloudevents = cloudevents;
        // Broker trouble (refused connections, all brokers down) shows while messages wait.
        config.logger = logger.sink ? logger : stderr_logger(LogLevel::warning);
        try {
            destination = std::make_unique<KafkaDestination>(io.get_executor(), config);
        } catch (const std::invalid_argument& e) {
            return usage_error(std::string("send: ") + e.what());
        }
#else
        return usage_error("send: this build has no Kafka support (OUTBOX_WITH_KAFKA=OFF)");
#endif
    } else {
        SqsDestinationConfig config;
        config.queue_url = to;
        config.endpoint = endpoint;
        config.region = region;
        config.logger = logger;
        config.http.logger = logger;
        config.retry = retry;
        config.credentials = credentials;
        config.stager = stager;
        config.staging = staging;
        config.staging_threshold = stage_threshold;
        config.require_md5 = !allow_missing_md5;
        if (envelope == "cloudevents") {
            config.envelope = Envelope::cloudevents;
            config.cloudevents = cloudevents;
        }
        auto make = [&] { return std::make_unique<SqsDestination>(io.get_executor(), config); };
        try {
            destination = make();
        } catch (const std::invalid_argument& e) {
            if (!region.empty() ||
                std::string_view(e.what()).find("no region") == std::string_view::npos)
                return usage_error(std::string("send: ") + e.what());
            // A local URL names no region, nor does the environment: sign for us-east-1.
            config.region = "us-east-1";
            try {
                destination = make();
            } catch (const std::invalid_argument& again) {
                return usage_error(std::string("send: ") + again.what());
            }
        }
    }

    LineReader reader;
    if (std::string why; !reader.open(input, why))
        return usage_error("send: cannot read " + (input == "-" ? "standard input" : input) + ": " +
                           why);
    Outcome outcome;
    if (!report_path.empty()) {
        // Refused before the report is opened, which would truncate the input.
        if (same_file(reader.fd(), report_path))
            return usage_error("send: the report " + report_path + " is the input file");
        if (std::string why; !outcome.report.open(report_path, why))
            return usage_error("send: cannot write the report " + report_path + ": " + why);
    }

    // A signal stops the input loop: the handler runs on the I/O thread and wakes a read that
    // waits for input through this pipe.
    int wake[2] = {-1, -1};
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return usage_error(std::string("send: pipe: ") + std::strerror(errno));
    struct PipeCloser {
        int* fds;
        ~PipeCloser() {
            ::close(fds[0]);
            ::close(fds[1]);
        }
    } pipe_closer{wake};
    reader.stop_on(wake[0]);

    // The I/O thread runs the destination; this thread reads input and waits for room.
    auto work = asio::make_work_guard(io);
    std::mutex mutex;
    std::condition_variable room;
    std::size_t outstanding = 0, outstanding_bytes = 0;
    // Read-ahead: at most this many messages, or bytes, accepted and not yet completed.
    constexpr std::size_t window = 8192;
    constexpr std::size_t window_bytes = 32 * 1024 * 1024;
    std::atomic<std::uint64_t> submitted{0};
    int stop_signal = 0;  // under mutex

    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::function<void()> wait_for_signal = [&] {
        signals.async_wait([&](boost::system::error_code ec, int sig) {
            if (ec) return;
            bool first = false;
            {
                std::lock_guard lock(mutex);
                first = stop_signal == 0;
                if (first) stop_signal = sig;
            }
            if (first) {
                const char byte = 1;
                [[maybe_unused]] const auto n = ::write(wake[1], &byte, 1);
                room.notify_all();
            }
            wait_for_signal();  // later signals: already stopping
        });
    };
    wait_for_signal();
    std::thread io_thread([&] { io.run(); });

    const bool progress = isatty(STDERR_FILENO) != 0;
    asio::steady_timer ticker(io);
    std::function<void()> tick = [&] {
        ticker.expires_after(std::chrono::milliseconds(200));
        ticker.async_wait([&](boost::system::error_code ec) {
            if (ec || !destination) return;
            std::fprintf(stderr, "\rsent %llu: delivered %llu, failed %llu, in flight %llu   ",
                         static_cast<unsigned long long>(submitted.load()),
                         static_cast<unsigned long long>(outcome.delivered),
                         static_cast<unsigned long long>(outcome.failed),
                         static_cast<unsigned long long>(destination->stats().in_flight));
            tick();
        });
    };
    if (progress) asio::post(io, tick);

    simdjson::dom::parser parser;
    std::string_view line;
    std::uint64_t index = 0;
    std::string input_error;
    bool stopped_reading = false;
    for (;; ++index) {
        const LineReader::Next next = reader.next(line);
        if (next == LineReader::Next::end) break;
        if (next == LineReader::Next::error) {
            input_error = "cannot read " + (input == "-" ? std::string("standard input") : input) +
                          " after " + std::to_string(index) + " lines: " + reader.error();
            break;
        }
        if (next == LineReader::Next::stopped || outcome.report_failed) {
            stopped_reading = true;
            break;
        }
        if (line.find_first_not_of(" \t") == std::string_view::npos)
            continue;  // blank lines carry nothing
        Message message;
        std::string why;
        if (objects && !parse_object_line(parser, line, message, why)) {
            asio::post(io, [&outcome, index, why] {
                Receipt r;
                r.diagnostics.message = "line " + std::to_string(index + 1) + ": " + why;
                outcome.record(index, Errc::invalid_message, r);
            });
            continue;
        }
        if (!objects) message.body.assign(line);
        const std::size_t bytes = message.body.size();
        {
            std::unique_lock lock(mutex);
            room.wait(lock, [&] {
                return stop_signal != 0 || outstanding == 0 ||
                       (outstanding < window && outstanding_bytes + bytes <= window_bytes);
            });
            if (stop_signal != 0) {
                stopped_reading = true;
                break;
            }
            ++outstanding;
            outstanding_bytes += bytes;
        }
        ++submitted;
        destination->async_send(std::move(message),
                                [&, index, bytes](boost::system::error_code ec, Receipt r) {
                                    outcome.record(index, ec, r);
                                    std::lock_guard lock(mutex);
                                    --outstanding;
                                    outstanding_bytes -= bytes;
                                    room.notify_all();
                                });
    }

    // What was read is delivered or failed, and reported, before the program ends: all of it
    // normally; within the grace period after a signal.
    const auto close_destination = [&](std::chrono::milliseconds deadline) {
        std::promise<void> closed;
        destination->async_close(deadline, [&](boost::system::error_code) { closed.set_value(); });
        closed.get_future().wait();
    };
    int signal_seen = 0;
    {
        std::unique_lock lock(mutex);
        room.wait(lock, [&] { return outstanding == 0 || stop_signal != 0; });
        signal_seen = stop_signal;
    }
    if (signal_seen != 0) {
        std::fprintf(stderr,
                     "%soutbox: send: %s: no more input is read; %llu messages in flight get up "
                     "to %lld s to finish\n",
                     progress ? "\r\033[K" : "", signal_name(signal_seen),
                     static_cast<unsigned long long>(destination->stats().in_flight),
                     grace_seconds);
        close_destination(std::chrono::seconds(grace_seconds));
        std::unique_lock lock(mutex);
        room.wait(lock, [&] { return outstanding == 0; });
    } else {
        close_destination(std::chrono::seconds(30));
    }
    if (stager) stager->close();  // its idle connections would hold the event loop
    const DestinationStats stats = destination->stats();
    // The progress ticker reads the destination on the I/O thread: reset it there, and let
    // the report lines posted before this finish first.
    std::promise<void> released;
    asio::post(io, [&] {
        ticker.cancel();
        signals.cancel();
        destination.reset();
        released.set_value();
    });
    released.get_future().wait();
    work.reset();
    io_thread.join();
    const bool report_ok = outcome.report.close();
    if (progress) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "delivered %llu, failed %llu\n",
                 static_cast<unsigned long long>(outcome.delivered),
                 static_cast<unsigned long long>(outcome.failed));
    if (!outcome.first_failure.empty())
        std::fprintf(stderr, "first failure: %s\n", outcome.first_failure.c_str());
    if (print_stats) std::fputs(describe(stats).c_str(), stderr);
    // Every reason the run is incomplete is said, whichever decides the exit status: a report
    // that is missing lines must never pass for a complete one.
    if (!input_error.empty()) std::fprintf(stderr, "outbox: send: %s\n", input_error.c_str());
    if (!report_ok)
        std::fprintf(stderr, "outbox: send: %s%s\n", outcome.report.error().c_str(),
                     stopped_reading ? "; no more input was read after it" : "");
    if (signal_seen != 0) {
        std::fprintf(stderr, "outbox: send: stopped by %s after %llu input lines\n",
                     signal_name(signal_seen), static_cast<unsigned long long>(index));
        return 128 + signal_seen;
    }
    if (!input_error.empty() || !report_ok) return 2;
    return outcome.failed == 0 ? 0 : 1;
}

}  // namespace outbox::cli
