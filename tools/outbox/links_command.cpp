#include "links_command.hpp"

#include "cli_io.hpp"
#include "metrics_server.hpp"

#include <outbox/aws_environment.hpp>
#include <outbox/credentials_providers.hpp>
#include <outbox/payload_links.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <charconv>
#include <csignal>
#include <iostream>
#include <optional>
#include <stdexcept>

namespace outbox::cli {
namespace {

constexpr std::string_view usage =
    "usage: outbox links --listen HOST:PORT --link-keys FILE [--region R] [--endpoint URL]\n"
    "                    [--url-expires SECONDS] [--bucket B]...\n"
    "Answers long-lived payload links (made by a stager with links, or by outbox presign\n"
    "--link) with a redirect to a URL pre-signed on the spot, valid --url-expires seconds\n"
    "(default 60): 302 for a valid link, 410 for an expired one, 403 for an altered one or one\n"
    "signed with a key not in FILE (lines \"ID SECRET\"; every key verifies). --bucket limits\n"
    "the buckets links may name. Credentials and region as for presign. Plain HTTP: serve it\n"
    "behind TLS. Once listening, prints {\"listening\":\"HOST:PORT\",\"port\":N}. Runs until\n"
    "SIGINT or SIGTERM.\n";

}  // namespace

int run_links(int argc, char** argv) {
    std::string listen, keys_file, region, endpoint;
    long long url_expires = 60;
    std::vector<std::string> buckets;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        std::string v;
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "--listen") {
            if (!value(listen)) return usage_error("links: --listen needs HOST:PORT");
        } else if (a == "--link-keys") {
            if (!value(keys_file)) return usage_error("links: --link-keys needs a file");
        } else if (a == "--region") {
            if (!value(region) || region.empty())
                return usage_error("links: --region needs a value");
        } else if (a == "--endpoint") {
            if (!value(endpoint)) return usage_error("links: --endpoint needs a URL");
        } else if (a == "--bucket") {
            if (!value(v) || v.empty()) return usage_error("links: --bucket needs a name");
            buckets.push_back(v);
        } else if (a == "--url-expires") {
            if (!value(v)) return usage_error("links: --url-expires needs a number of seconds");
            const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), url_expires);
            if (ec != std::errc{} || p != v.data() + v.size() || url_expires < 1 ||
                url_expires > 604800)
                return usage_error("links: --url-expires must be 1 to 604800 seconds");
        } else {
            return usage_error("links: unknown option " + std::string(a) + "\n" +
                               std::string(usage));
        }
    }
    if (listen.empty() || keys_file.empty())
        return usage_error("links: --listen and --link-keys are required\n" + std::string(usage));

    boost::asio::io_context io;
    PayloadLinkServiceConfig config;
    std::optional<PayloadLinkService> service;
    boost::asio::ip::tcp::endpoint where;
    try {
        where = parse_listen_address(listen, "--listen");
        config.links = std::make_shared<const PayloadLinks>("", read_payload_link_keys(keys_file));
        if (!region.empty())
            require_valid_region(region, "--region");
        else if (auto found = region_from_environment(); !found.value.empty())
            region = found.value;
        else
            region = "us-east-1";
        config.region = region;
        config.endpoint = endpoint;
        config.url_expires = std::chrono::seconds(url_expires);
        config.buckets = buckets;
        DefaultCredentialsOptions options;
        options.logger =
            env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug) : stderr_logger(LogLevel::error);
        config.credentials = make_default_credentials(io.get_executor(), options);
        config.logger = stderr_logger(env("OUTBOX_DEBUG") ? LogLevel::debug : LogLevel::warning);
        service.emplace(io.get_executor(), config);
    } catch (const std::invalid_argument& e) {
        return usage_error(std::string("links: ") + e.what());
    }
    try {
        service->listen(where);
    } catch (const boost::system::system_error& e) {
        std::cerr << "outbox: links: cannot listen on " << listen << ": " << e.code().message()
                  << "\n";
        return 1;
    }
    // One line on standard output once listening (the port, when 0 was asked for).
    std::cout << "{\"listening\":\"" << where.address().to_string() << ":" << service->port()
              << "\",\"port\":" << service->port() << "}" << std::endl;
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    int stopped_by = 0;
    signals.async_wait([&](boost::system::error_code ec, int signal) {
        if (ec) return;
        stopped_by = signal;
        service->stop();
    });
    io.run();
    return stopped_by ? 0 : 1;
}

}  // namespace outbox::cli
