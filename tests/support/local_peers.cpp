#include "local_peers.hpp"

#include <simdjson.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace outbox::test {

std::string peers_dir() {
    return source_dir() + "/tests/peers";
}

PeerProcess& fauxqs() {
    static PeerProcess peer({"node", "--no-warnings", peers_dir() + "/fauxqs_peer.mjs", "0"});
    return peer;
}

PeerProcess& s3rver() {
    static const std::string dir =
        (std::filesystem::temp_directory_path() / ("outbox-s3rver-" + std::to_string(::getpid())))
            .string();
    static PeerProcess peer({"node", "--no-warnings", peers_dir() + "/s3rver_peer.mjs", "0", dir,
                             "outbox-staging", "other.bucket", "cli-staging"});
    return peer;
}

std::string create_queue(const std::string& name, const std::string& attributes_json) {
    std::vector<std::string> argv = {
        "node",         "--no-warnings", peers_dir() + "/sqs_client.mjs",
        "create-queue", fauxqs().url(),  name};
    if (!attributes_json.empty()) argv.push_back(attributes_json);
    std::string out;
    if (run_command(argv, out) != 0) throw std::runtime_error("CreateQueue " + name + " failed");
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

std::string receive_json(const std::string& queue_url, std::size_t count, int seconds) {
    std::string out;
    if (run_command({"node", "--no-warnings", peers_dir() + "/sqs_client.mjs", "receive",
                     fauxqs().url(), queue_url, std::to_string(count), std::to_string(seconds)},
                    out) != 0)
        throw std::runtime_error("ReceiveMessage from " + queue_url + " failed");
    return out;
}

std::vector<std::string> drain_bodies(const std::string& queue_url, int seconds) {
    std::string out;
    if (run_command({"node", "--no-warnings", peers_dir() + "/sqs_client.mjs", "receive",
                     fauxqs().url(), queue_url, "all", std::to_string(seconds)},
                    out) != 0)
        throw std::runtime_error("ReceiveMessage from " + queue_url + " failed");
    simdjson::dom::parser parser;
    std::vector<std::string> bodies;
    for (simdjson::dom::element m : parser.parse(out).get_array())
        bodies.emplace_back(std::string_view(m["body"]));
    return bodies;
}

std::vector<std::string> receive_bodies(const std::string& queue_url, std::size_t count,
                                        int seconds) {
    simdjson::dom::parser parser;
    std::vector<std::string> bodies;
    for (simdjson::dom::element m :
         parser.parse(receive_json(queue_url, count, seconds)).get_array())
        bodies.emplace_back(std::string_view(m["body"]));
    return bodies;
}

}  // namespace outbox::test
