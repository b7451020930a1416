// `outbox send`'s arguments.
#include "send_options.hpp"

#include <cstdlib>

namespace outbox::cli {

const std::string_view send_usage =
    "usage: outbox send --to QUEUE_URL [--endpoint URL] [--region R] [--objects]\n"
    "                   [--report FILE] [--max-attempts N] [--deadline SECONDS]\n"
    "                   [--grace SECONDS] [--allow-missing-md5]\n"
    "                   [--stage s3://BUCKET/PREFIX [--s3-endpoint URL] [--s3-region R]\n"
    "                    [--stage-always | --stage-threshold BYTES] [--url-expires SECONDS]\n"
    "                    [--stage-checksum crc32|crc64nvme|none] [--stage-unconditional]]\n"
    "                   [--envelope raw|cloudevents|extended-client] [--stats]\n"
    "                   [FILE|-]\n"
    "       outbox send --to kafka://HOST:PORT[,HOST:PORT...]/TOPIC\n"
    "                   [--sasl-user U --sasl-password-file F] [--tls-ca FILE] [--plaintext]\n"
    "                   [same input, report and staging options]\n"
    "Sends JSON Lines (from FILE or standard input): each line is one message body, or with\n"
    "--objects an object {\"body\": \"...\", \"group_id\": \"...\", \"dedup_id\": \"...\",\n"
    "\"attributes\": {\"name\": \"text\" | {\"type\": \"Number\", \"value\": \"42\"}}, \"delay\": "
    "SECONDS,\n\"traceparent\": \"00-...\", \"tracestate\": \"...\", \"aws_trace_header\": "
    "\"Root=...\"}.\n"
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
    "addresses a local S3 path-style. Each upload carries a CRC32 checksum S3 verifies\n"
    "(--stage-checksum; none when AWS_REQUEST_CHECKSUM_CALCULATION is when_required) and\n"
    "If-None-Match: *, so a retry never overwrites (--stage-unconditional drops it).\n"
    "--envelope cloudevents wraps each message in a\n"
    "CloudEvents 1.0 JSON event (source \"outbox\", type \"outbox.message\");\n"
    "--envelope extended-client sends staged bodies as the SQS Extended Client Library's\n"
    "pointer (with the ExtendedPayloadSize attribute) for consumers that use it.\n"
    "--stats prints the destination's counters and latency percentiles at the end.\n"
    "Exit status: 0 all delivered, 1 any failed, 2 usage, input or report error (what was\n"
    "read is still delivered or failed), 128+N stopped by signal N. OUTBOX_DEBUG=1 logs.\n";

SendParse parse_send_options(int argc, char** argv, SendOptions& o, std::string& error) {
    bool input_given = false;
    auto refuse = [&](std::string why) {
        error = std::move(why);
        return SendParse::usage_error;
    };
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (take_delivery_option("send", argc, argv, i, o.delivery, error)) {
            if (!error.empty()) return SendParse::usage_error;
            continue;
        }
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        if (a == "-h" || a == "--help") {
            return SendParse::help;
        } else if (a == "--to") {
            if (!value(o.to)) return refuse("send: --to needs a queue URL");
        } else if (a == "--report") {
            if (!value(o.report_path)) return refuse("send: --report needs a file name");
        } else if (a == "--stats") {
            o.print_stats = true;
        } else if (a == "--grace") {
            std::string v;
            char* end = nullptr;
            if (!value(v) || v.empty() ||
                (o.grace_seconds = std::strtoll(v.c_str(), &end, 10)) < 0 ||
                o.grace_seconds > 3600 || *end != '\0')
                return refuse("send: --grace must be 0 to 3600 seconds");
        } else if (a == "--objects") {
            o.objects = true;
        } else if (a.size() > 1 && a.front() == '-') {
            return refuse("send: unknown option " + std::string(a) + "\n" +
                          std::string(send_usage));
        } else if (!input_given) {
            o.input = a;
            input_given = true;
        } else {
            return refuse("send: more than one input file");
        }
    }
    if (o.to.empty()) return refuse("send: missing --to QUEUE_URL\n" + std::string(send_usage));
    const bool to_kafka = is_kafka_target(o.to);
    if (auto why = check_delivery_options("send", o.delivery, !to_kafka, to_kafka); !why.empty())
        return refuse(why);
    return SendParse::run;
}

}  // namespace outbox::cli
