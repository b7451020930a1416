// `outbox send`'s arguments: parsed apart from running, so they are tested without a process.
#pragma once

#include "delivery.hpp"

#include <string>
#include <string_view>

namespace outbox::cli {

struct SendOptions {
    std::string to;                // an SQS queue URL or kafka://HOSTS/TOPIC
    std::string input = "-";       // FILE, or "-" for standard input
    std::string report_path;       // empty: no report
    bool objects = false;          // lines are {"body": ..., ...} objects
    bool print_stats = false;      // --stats
    long long grace_seconds = 10;  // after SIGINT or SIGTERM
    DeliveryOptions delivery;
};

extern const std::string_view send_usage;

enum class SendParse {
    run,          // `options` are complete and consistent
    help,         // --help: print send_usage, exit 0
    usage_error,  // `error` says what is wrong ("send: ..."), exit 2
};

SendParse parse_send_options(int argc, char** argv, SendOptions& options, std::string& error);

}  // namespace outbox::cli
