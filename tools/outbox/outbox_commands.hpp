// The durable outbox's commands: enqueue, relay, inspect, redrive, purge.
#pragma once

namespace outbox::cli {

int run_enqueue(int argc, char** argv);
int run_relay(int argc, char** argv);
int run_inspect(int argc, char** argv);
int run_redrive(int argc, char** argv);
int run_purge(int argc, char** argv);

}  // namespace outbox::cli
