// `outbox send`: JSON Lines in, messages to an SQS queue or a Kafka topic out, a report per line.
#pragma once

namespace outbox::cli {

int run_send(int argc, char** argv);

}  // namespace outbox::cli
