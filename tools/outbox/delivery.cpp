#include "delivery.hpp"

#include "cli_io.hpp"

#include <outbox/aws_environment.hpp>
#include <outbox/credentials_providers.hpp>
#include <outbox/envelope.hpp>
#include <outbox/sqs_destination.hpp>
#if OUTBOX_WITH_KAFKA
#include <outbox/kafka_destination.hpp>

#include <librdkafka/rdkafka.h>
#endif

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace outbox::cli {

const std::string_view delivery_usage =
    "  [--endpoint URL] [--region R] [--max-attempts N] [--deadline SECONDS]\n"
    "  [--allow-missing-md5] [--envelope raw|cloudevents|extended-client]\n"
    "  [--stage s3://BUCKET/PREFIX [--s3-endpoint URL] [--s3-region R]\n"
    "   [--stage-always | --stage-threshold BYTES] [--url-expires SECONDS]\n"
    "   [--stage-checksum crc32|crc64nvme|none] [--stage-unconditional]]\n"
    "  kafka://: [--sasl-user U --sasl-password-file F] [--tls-ca FILE] [--plaintext]\n"
    "   [-X LIBRDKAFKA_PROPERTY=VALUE]...\n";

namespace {

// Why librdkafka refuses NAME=VALUE (empty: it takes it), asked at once so that a typo is a
// usage error, not a dead letter per event once the relay makes the destination.
std::string kafka_property_error(const std::string& name, const std::string& value) {
#if OUTBOX_WITH_KAFKA
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512] = "";
    const bool ok =
        rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK;
    rd_kafka_conf_destroy(conf);
    if (ok) return {};
    // librdkafka's message may quote the value: not for secrets.
    return is_secret_kafka_property(name) ? std::string("refused by librdkafka") : std::string(err);
#else
    (void)name;
    (void)value;
    return "this build has no Kafka support (OUTBOX_WITH_KAFKA=OFF)";
#endif
}

}  // namespace

bool take_delivery_option(std::string_view command, int argc, char** argv, int& i,
                          DeliveryOptions& o, std::string& error) {
    const std::string_view a = argv[i];
    const std::string prefix = std::string(command) + ": ";
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
    auto bad = [&](const std::string& why) {
        error = prefix + why;
        return true;
    };
    long long n = 0;
    if (a == "--endpoint") {
        if (!value(o.endpoint)) return bad("--endpoint needs a URL");
    } else if (a == "--region") {
        if (!value(o.region) || o.region.empty()) return bad("--region needs a value");
    } else if (a == "--stage") {
        if (!value(o.stage) || !o.stage.starts_with("s3://") || o.stage.size() <= 5)
            return bad("--stage needs s3://BUCKET[/PREFIX]");
    } else if (a == "--s3-endpoint") {
        if (!value(o.s3_endpoint)) return bad("--s3-endpoint needs a URL");
    } else if (a == "--s3-region") {
        if (!value(o.s3_region) || o.s3_region.empty()) return bad("--s3-region needs a value");
    } else if (a == "--stage-threshold") {
        if (!number(1, 1LL << 40, n)) return bad("--stage-threshold needs a number of bytes");
        o.stage_threshold = static_cast<std::size_t>(n);
    } else if (a == "--stage-always") {
        o.stage_always = true;
    } else if (a == "--stage-checksum") {
        if (!value(o.stage_checksum) ||
            (o.stage_checksum != "crc32" && o.stage_checksum != "crc64nvme" &&
             o.stage_checksum != "none"))
            return bad("--stage-checksum must be crc32, crc64nvme or none");
    } else if (a == "--stage-unconditional") {
        o.stage_unconditional = true;
    } else if (a == "--url-expires") {
        if (!number(1, 604800, o.url_expires))
            return bad("--url-expires must be 1 to 604800 seconds");
    } else if (a == "--envelope") {
        if (!value(o.envelope) ||
            (o.envelope != "raw" && o.envelope != "cloudevents" && o.envelope != "extended-client"))
            return bad("--envelope must be raw, cloudevents or extended-client");
    } else if (a == "--deadline") {
        if (!number(1, 86400, o.deadline_seconds))
            return bad("--deadline must be 1 to 86400 seconds");
    } else if (a == "--allow-missing-md5") {
        o.allow_missing_md5 = true;
    } else if (a == "--sasl-user") {
        if (!value(o.sasl_user) || o.sasl_user.empty()) return bad("--sasl-user needs a user name");
    } else if (a == "--sasl-password-file") {
        if (!value(o.sasl_password_file)) return bad("--sasl-password-file needs a file");
    } else if (a == "--tls-ca") {
        if (!value(o.tls_ca)) return bad("--tls-ca needs a PEM file");
    } else if (a == "--plaintext") {
        o.plaintext = true;
    } else if (a == "-X" || a == "--kafka-property") {
        std::string v;
        const auto eq = value(v) ? v.find('=') : std::string::npos;
        if (eq == std::string::npos || eq == 0)
            return bad(std::string(a) + " needs a librdkafka property as NAME=VALUE");
        std::string name = v.substr(0, eq), setting = v.substr(eq + 1);
        if (const std::string why = kafka_property_error(name, setting); !why.empty())
            return bad(std::string(a) + " " + name + ": " + why);
        o.kafka_properties.emplace_back(std::move(name), std::move(setting));
    } else if (a == "--max-attempts") {
        if (!number(1, 1000, n)) return bad("--max-attempts needs a number from 1 to 1000");
        o.max_attempts = static_cast<std::uint32_t>(n);
    } else {
        return false;
    }
    return true;
}

std::string check_delivery_options(std::string_view command, const DeliveryOptions& o,
                                   bool sqs_targets, bool kafka_targets) {
    const std::string prefix = std::string(command) + ": ";
    if (!sqs_targets && (!o.endpoint.empty() || !o.region.empty() || o.allow_missing_md5))
        return prefix + "--endpoint, --region and --allow-missing-md5 are for SQS queues";
    if (!kafka_targets && (!o.sasl_user.empty() || !o.sasl_password_file.empty() ||
                           !o.tls_ca.empty() || o.plaintext || !o.kafka_properties.empty()))
        return prefix +
               "--sasl-user, --sasl-password-file, --tls-ca, --plaintext and -X are for kafka://";
    if (o.envelope == "extended-client" && o.stage.empty())
        return prefix + "--envelope extended-client points at staged payloads: it needs --stage";
    if (o.sasl_user.empty() != o.sasl_password_file.empty())
        return prefix + "--sasl-user and --sasl-password-file go together";
    if ((o.stage_always || o.stage_threshold || !o.s3_endpoint.empty() || !o.s3_region.empty() ||
         !o.stage_checksum.empty() || o.stage_unconditional) &&
        o.stage.empty())
        return prefix +
               "--stage-always, --stage-threshold, --stage-checksum, --stage-unconditional, "
               "--s3-endpoint and --s3-region need --stage";
    return {};
}

bool is_kafka_target(std::string_view target) {
    return target.starts_with("kafka://");
}

namespace {

// kafka://HOST:PORT[,HOST:PORT...]/TOPIC into its parts; false when it is not that.
bool split_kafka_target(std::string_view target, std::string& bootstrap, std::string& topic) {
    const std::string_view rest = target.substr(8);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) return false;
    bootstrap = std::string(rest.substr(0, slash));
    topic = std::string(rest.substr(slash + 1));
    return true;
}

}  // namespace

Delivery::Delivery(boost::asio::any_io_executor executor, DeliveryOptions options, Logger logger)
    : executor_(std::move(executor)), options_(std::move(options)), logger_(std::move(logger)) {
    DefaultCredentialsOptions credentials_options;
    // Unreadable profile files are reported even without OUTBOX_DEBUG.
    credentials_options.logger = logger_.sink ? logger_ : stderr_logger(LogLevel::error);
    credentials_ = make_default_credentials(executor_, credentials_options);
    if (options_.stage.empty()) return;
    const std::string rest = options_.stage.substr(5);
    PayloadStagerConfig s3;
    s3.bucket = rest.substr(0, rest.find('/'));
    s3.prefix =
        rest.find('/') == std::string::npos ? std::string() : rest.substr(rest.find('/') + 1);
    while (!s3.prefix.empty() && s3.prefix.back() == '/') s3.prefix.pop_back();
    s3.endpoint = options_.s3_endpoint;
    s3.region = options_.s3_region;
    if (s3.region.empty()) s3.region = region_from_environment().value;
    if (s3.region.empty()) s3.region = "us-east-1";
    s3.credentials = credentials_;
    s3.url_expires = std::chrono::seconds(options_.url_expires);
    if (options_.stage_checksum == "crc32") s3.checksum = S3Checksum::crc32;
    if (options_.stage_checksum == "crc64nvme") s3.checksum = S3Checksum::crc64nvme;
    if (options_.stage_checksum == "none") s3.checksum = S3Checksum::none;
    s3.conditional_write = !options_.stage_unconditional;
    s3.logger = logger_;
    s3.http.logger = logger_;
    if (options_.max_attempts != 0) s3.retry.max_attempts = options_.max_attempts;
    try {
        stager_ = std::make_shared<PayloadStager>(executor_, s3);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("--stage: ") + e.what());
    }
}

void Delivery::close() {
    if (stager_) stager_->close();
}

std::unique_ptr<Destination> Delivery::make(const std::string& target,
                                            const RetryPolicy& retry) const {
    const StagingPolicy staging =
        options_.stage_always ? StagingPolicy::always : StagingPolicy::over_threshold;
    CloudEventAttributes cloudevents;
    if (options_.envelope == "cloudevents") {
        cloudevents.source = "outbox";
        cloudevents.type = "outbox.message";
    }
    if (is_kafka_target(target)) {
#if OUTBOX_WITH_KAFKA
        KafkaDestinationConfig config;
        if (!split_kafka_target(target, config.bootstrap_servers, config.topic))
            throw std::invalid_argument("\"" + target +
                                        "\" is not kafka://HOST:PORT[,HOST:PORT...]/TOPIC");
        if (!options_.sasl_user.empty()) {
            std::ifstream secret(options_.sasl_password_file, std::ios::binary);
            if (!secret) throw std::invalid_argument("cannot read " + options_.sasl_password_file);
            std::getline(secret, config.sasl_password);
            if (!config.sasl_password.empty() && config.sasl_password.back() == '\r')
                config.sasl_password.pop_back();
            config.sasl_username = options_.sasl_user;
            config.security =
                options_.plaintext ? KafkaSecurity::sasl_plaintext : KafkaSecurity::sasl_ssl;
        } else {
            config.security = options_.plaintext ? KafkaSecurity::plaintext : KafkaSecurity::ssl;
        }
        config.tls.ca_file = options_.tls_ca;
        config.properties = options_.kafka_properties;
        config.retry = retry;
        config.stager = stager_;
        config.staging = staging;
        config.staging_threshold = options_.stage_threshold;
        config.envelope = options_.envelope == "cloudevents"       ? Envelope::cloudevents
                          : options_.envelope == "extended-client" ? Envelope::extended_client
                                                                   : Envelope::raw;
        config.cloudevents = cloudevents;
        // Broker trouble (refused connections, all brokers down) shows while messages wait.
        config.logger = logger_.sink ? logger_ : stderr_logger(LogLevel::warning);
        return std::make_unique<KafkaDestination>(executor_, config);
#else
        throw std::invalid_argument("this build has no Kafka support (OUTBOX_WITH_KAFKA=OFF)");
#endif
    }
    SqsDestinationConfig config;
    config.queue_url = target;
    config.endpoint = options_.endpoint;
    config.region = options_.region;
    config.logger = logger_;
    config.http.logger = logger_;
    config.retry = retry;
    config.credentials = credentials_;
    config.stager = stager_;
    config.staging = staging;
    config.staging_threshold = options_.stage_threshold;
    config.require_md5 = !options_.allow_missing_md5;
    if (options_.envelope == "cloudevents") {
        config.envelope = Envelope::cloudevents;
        config.cloudevents = cloudevents;
    }
    if (options_.envelope == "extended-client") config.envelope = Envelope::extended_client;
    // A local URL names no region, nor may the endpoint or the environment: sign for
    // us-east-1 then.
    config.fallback_region = "us-east-1";
    return std::make_unique<SqsDestination>(executor_, config);
}

std::string why_not_a_target(const std::string& target, bool* fifo) {
    if (fifo != nullptr) *fifo = false;
    if (is_kafka_target(target)) {
        std::string bootstrap, topic;
        if (!split_kafka_target(target, bootstrap, topic))
            return "\"" + target + "\" is not kafka://HOST:PORT[,HOST:PORT...]/TOPIC";
        return {};
    }
    SqsQueueUrlParts parts;
    if (const std::string why = check_sqs_queue_url(target, &parts); !why.empty())
        return "\"" + target + "\" is neither an SQS queue URL (" + why + ") nor kafka://";
    if (fifo != nullptr) *fifo = parts.fifo;
    return {};
}

std::string why_undeliverable(const std::string& target, const Message& message, bool staging,
                              bool check_size) {
    return UndeliverableCheck(staging, check_size)(target, message);
}

std::string UndeliverableCheck::operator()(const std::string& target, const Message& message) {
    if (!known_ || target != target_) {
        target_ = target;
        known_ = true;
        kafka_ = is_kafka_target(target);
        target_error_ = why_not_a_target(target, &fifo_);
    }
    if (!target_error_.empty()) return target_error_;
    if (kafka_) {
        if (message.delay.count() != 0) return "Kafka has no delivery delay";
        if (!message.deduplication_id.empty()) return "Kafka has no deduplication ids";
        return {};
    }
    if (std::string why = check_sqs_message(message, fifo_, !staging_); !why.empty()) return why;
    if (check_size_ && !staging_ && sqs_message_size(message) > sqs_largest_max_message_size)
        return "the message has " + std::to_string(sqs_message_size(message)) +
               " bytes; SQS takes at most " + std::to_string(sqs_largest_max_message_size);
    return {};
}

}  // namespace outbox::cli
