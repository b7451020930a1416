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

std::vector<std::string> create_queues(const std::string& prefix, std::size_t count) {
    std::string out;
    if (run_command({"node", "--no-warnings", peers_dir() + "/sqs_client.mjs", "create-queues",
                     fauxqs().url(), prefix, std::to_string(count)},
                    out) != 0)
        throw std::runtime_error("CreateQueue " + prefix + "-* failed");
    std::vector<std::string> urls;
    std::size_t at = 0;
    for (std::size_t end; (end = out.find('\n', at)) != std::string::npos; at = end + 1)
        if (end > at) urls.push_back(out.substr(at, end - at));
    if (urls.size() != count) throw std::runtime_error("CreateQueue " + prefix + "-*: too few");
    return urls;
}

std::string receive_many_json(const std::vector<std::string>& queue_urls, std::size_t count_each,
                              int seconds) {
    std::vector<std::string> argv = {"node",
                                     "--no-warnings",
                                     peers_dir() + "/sqs_client.mjs",
                                     "receive-many",
                                     fauxqs().url(),
                                     std::to_string(count_each),
                                     std::to_string(seconds)};
    argv.insert(argv.end(), queue_urls.begin(), queue_urls.end());
    std::string out;
    if (run_command(argv, out) != 0) throw std::runtime_error("ReceiveMessage (many) failed");
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
