#include "sigv4_proxy.hpp"

#include "local_peers.hpp"

#include <simdjson.h>

namespace outbox::test {
namespace {

std::vector<std::string> proxy_argv(unsigned short upstream_port, const std::string& service,
                                    const std::string& access_key, const std::string& secret_key,
                                    const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {
        "/usr/bin/python3", peers_dir() + "/sigv4_proxy.py",
        "--upstream",       "127.0.0.1:" + std::to_string(upstream_port),
        "--service",        service,
        "--access-key",     access_key,
        "--secret-key",     secret_key};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

}  // namespace

SigV4Proxy::SigV4Proxy(unsigned short upstream_port, const std::string& service,
                       const std::string& access_key, const std::string& secret_key,
                       const std::vector<std::string>& extra)
    : process(proxy_argv(upstream_port, service, access_key, secret_key, extra)) {}

std::string SigV4Proxy::stats_json() const {
    return http_get(process.port(), "/__proxy/stats");
}

std::uint64_t SigV4Proxy::stat(const std::string& name) const {
    simdjson::dom::parser parser;
    const std::string json = stats_json();
    simdjson::dom::element doc = parser.parse(json);
    if (name.starts_with("faults.")) return doc["faults"][name.substr(7)].get_uint64();
    return doc[name].get_uint64();
}

std::map<std::string, std::string> SigV4Proxy::last_headers() const {
    simdjson::dom::parser parser;
    const std::string json = http_get(process.port(), "/__proxy/last");
    std::map<std::string, std::string> out;
    for (auto [k, v] : parser.parse(json)["headers"].get_object())
        out[std::string(k)] = std::string(std::string_view(v));
    return out;
}

std::string SigV4Proxy::last_body() const {
    simdjson::dom::parser parser;
    const std::string json = http_get(process.port(), "/__proxy/last");
    return std::string(std::string_view(parser.parse(json)["body"]));
}

void SigV4Proxy::outage(double seconds) const {
    http_get(process.port(), "/__proxy/outage?seconds=" + std::to_string(seconds));
}

void SigV4Proxy::lose_next(int count) const {
    http_get(process.port(), "/__proxy/lose-next?count=" + std::to_string(count));
}

void SigV4Proxy::conflict_next(int count) const {
    http_get(process.port(), "/__proxy/conflict-next?count=" + std::to_string(count));
}

void SigV4Proxy::precondition_next(int count) const {
    http_get(process.port(), "/__proxy/precondition-next?count=" + std::to_string(count));
}

}  // namespace outbox::test
