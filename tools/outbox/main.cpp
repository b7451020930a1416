// The `outbox` command-line program.
#include "cli_io.hpp"
#include "links_command.hpp"
#include "outbox_commands.hpp"
#include "presign_command.hpp"
#include "send_command.hpp"
#include "sign_command.hpp"

#include <exception>
#include <iostream>
#include <string_view>

namespace {

constexpr std::string_view usage =
    "usage: outbox COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  send --to TARGET [FILE|-]  send JSON Lines messages to an SQS queue URL\n"
    "                            or a kafka://HOST:PORT/TOPIC\n"
    "  sign [FILE|-]             sign request descriptions (JSON) and show each step\n"
    "  presign s3://BUCKET/KEY   print a pre-signed S3 URL (or, with --link, a long-lived link)\n"
    "  links --listen HOST:PORT  answer long-lived payload links with fresh pre-signed URLs\n"
    "  enqueue --store FILE      store JSON Lines events durably for the relay\n"
    "  relay --store FILE        deliver a store's backlog, retrying for hours\n"
    "  inspect --store FILE      what a store holds, per target\n"
    "  redrive --store FILE      dead letters back to pending\n"
    "  purge --store FILE --target T   remove a target's events\n"
    "\n"
    "'outbox COMMAND --help' describes a command. Exit status: 0 success, 1 failure,\n"
    "2 usage, input or output error; 128+N stopped by signal N.\n";

int run(int argc, char** argv) {
    if (argc < 2) return outbox::cli::usage_error("missing command\n" + std::string(usage));
    const std::string_view command = argv[1];
    try {
        if (command == "send") return outbox::cli::run_send(argc - 2, argv + 2);
        if (command == "sign") return outbox::cli::run_sign(argc - 2, argv + 2);
        if (command == "presign") return outbox::cli::run_presign(argc - 2, argv + 2);
        if (command == "links") return outbox::cli::run_links(argc - 2, argv + 2);
        if (command == "enqueue") return outbox::cli::run_enqueue(argc - 2, argv + 2);
        if (command == "relay") return outbox::cli::run_relay(argc - 2, argv + 2);
        if (command == "inspect") return outbox::cli::run_inspect(argc - 2, argv + 2);
        if (command == "redrive") return outbox::cli::run_redrive(argc - 2, argv + 2);
        if (command == "purge") return outbox::cli::run_purge(argc - 2, argv + 2);
        if (command == "-h" || command == "--help" || command == "help") {
            std::cout << usage;
            return 0;
        }
        if (command == "--version") {
            std::cout << "outbox " OUTBOX_VERSION "\n";
            return 0;
        }
    } catch (const std::exception& e) {
        std::cerr << "outbox: " << command << ": " << e.what() << "\n";
        return 1;
    }
    return outbox::cli::usage_error("unknown command " + std::string(command) + "\n" +
                                    std::string(usage));
}

}  // namespace

int main(int argc, char** argv) {
    outbox::cli::guard_standard_streams();
    int status = run(argc, argv);
    // Output that never arrived (a full disk, a closed pipe) is a failed run.
    if (std::string why; !outbox::cli::flush_standard_output(why)) {
        std::cerr << "outbox: cannot write standard output: " << why << "\n";
        if (status < 2) status = 2;
    }
    return status;
}
