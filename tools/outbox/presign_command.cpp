#include "presign_command.hpp"

#include "cli_io.hpp"

#include <outbox/aws_environment.hpp>
#include <outbox/credentials_providers.hpp>
#include <outbox/payload_links.hpp>
#include <outbox/payload_stager.hpp>

#include <boost/asio/io_context.hpp>

#include <charconv>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <stdexcept>

namespace outbox::cli {
namespace {

constexpr std::string_view usage =
    "usage: outbox presign s3://BUCKET/KEY [--expires SECONDS] [--method GET|PUT]\n"
    "                      [--region R] [--endpoint URL]\n"
    "       outbox presign s3://BUCKET/KEY --link BASE_URL --link-keys FILE [--expires SECONDS]\n"
    "Prints a pre-signed URL. Credentials come from the default chain: environment\n"
    "(AWS_ACCESS_KEY_ID, ...), web identity, profile files, container, instance metadata.\n"
    "The region from --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, or\n"
    "us-east-1. --expires defaults to 3600 (1 to 604800). --endpoint gives a path-style URL\n"
    "on that server (a local S3 such as http://127.0.0.1:4568).\n"
    "With --link, prints a long-lived link that `outbox links` at BASE_URL answers with a\n"
    "fresh URL, signed with the first key of FILE (lines \"ID SECRET\"), valid --expires\n"
    "seconds (1 to 31536000); no AWS credentials are needed to make it.\n";

}  // namespace

int run_presign(int argc, char** argv) {
    std::string_view target, method = "GET", endpoint, link_base, link_keys;
    std::optional<std::string> region;
    long long expires = 3600;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string_view& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        std::string_view v;
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "--expires") {
            if (!value(v)) return usage_error("presign: --expires needs a value");
            const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), expires);
            if (ec != std::errc{} || p != v.data() + v.size() || expires < 1 || expires > 31536000)
                return usage_error(
                    "presign: --expires must be a whole number of seconds from 1 to 604800 (to "
                    "31536000 with --link)");
        } else if (a == "--method") {
            if (!value(method) || (method != "GET" && method != "PUT"))
                return usage_error("presign: --method must be GET or PUT");
        } else if (a == "--region") {
            if (!value(v) || v.empty()) return usage_error("presign: --region needs a value");
            region = std::string(v);
        } else if (a == "--endpoint") {
            if (!value(endpoint)) return usage_error("presign: --endpoint needs a URL");
        } else if (a == "--link") {
            if (!value(link_base) || link_base.empty())
                return usage_error("presign: --link needs the link service's base URL");
        } else if (a == "--link-keys") {
            if (!value(link_keys)) return usage_error("presign: --link-keys needs a file");
        } else if (a.size() > 1 && a.front() == '-') {
            return usage_error("presign: unknown option " + std::string(a) + "\n" +
                               std::string(usage));
        } else if (target.empty()) {
            target = a;
        } else {
            return usage_error("presign: more than one s3:// target");
        }
    }
    if (target.empty())
        return usage_error("presign: missing s3://BUCKET/KEY\n" + std::string(usage));
    if (!target.starts_with("s3://"))
        return usage_error("presign: target must look like s3://BUCKET/KEY");
    const std::string_view rest = target.substr(5);
    const std::size_t slash = rest.find('/');
    const std::string_view bucket = rest.substr(0, slash);
    const std::string_view key =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (link_base.empty() != link_keys.empty())
        return usage_error("presign: --link and --link-keys go together");
    if (!link_base.empty()) {
        if (bucket.empty() || key.empty())
            return usage_error("presign: target must look like s3://BUCKET/KEY");
        try {
            const PayloadLinks links(std::string(link_base),
                                     read_payload_link_keys(std::string(link_keys)));
            std::cout << links.link(
                             bucket, key,
                             std::chrono::system_clock::now() + std::chrono::seconds(expires))
                      << "\n";
            return 0;
        } catch (const std::invalid_argument& e) {
            return usage_error(std::string("presign: ") + e.what());
        }
    }
    if (expires > 604800)
        return usage_error("presign: --expires must be a whole number of seconds from 1 to 604800");
    try {
        if (region)
            require_valid_region(*region, "--region");
        else if (auto found = region_from_environment(); !found.value.empty())
            region = found.value;
        else
            region = "us-east-1";
    } catch (const std::invalid_argument& e) {
        return usage_error(std::string("presign: ") + e.what());
    }

    S3PresignRequest request{.bucket = std::string(bucket),
                             .key = std::string(key),
                             .region = *region,
                             .endpoint = std::string(endpoint),
                             .method = std::string(method),
                             .expires = std::chrono::seconds(expires)};
    if (!endpoint.empty()) {
        HttpOrigin origin;
        std::string ignored, why;
        if (parse_http_url(endpoint, origin, ignored, &why))
            return usage_error("presign: --endpoint \"" + std::string(endpoint) + "\": " + why);
    }
    // The request checked before credentials are looked for (with none, signing is the only
    // step that fails): usage errors come first.
    std::string url, why;
    if (const auto ec =
            presign_s3_url(request, Credentials{}, std::chrono::system_clock::now(), url, &why);
        ec != Errc::missing_credentials)
        return usage_error("presign: " + why);

    boost::asio::io_context io;
    boost::system::error_code creds_error;
    Credentials creds;
    DefaultCredentialsOptions options;
    options.logger = env("OUTBOX_DEBUG") ? stderr_logger(LogLevel::debug)
                                         : stderr_logger(LogLevel::error);  // unreadable files
    CredentialsProviderPtr chain;
    try {
        chain = make_default_credentials(io.get_executor(), options);
    } catch (const std::invalid_argument& e) {  // an unreadable AWS_CA_BUNDLE
        return usage_error(std::string("presign: ") + e.what());
    }
    chain->async_get_credentials([&](boost::system::error_code ec, Credentials c) {
        creds_error = ec;
        creds = std::move(c);
    });
    io.run();
    if (creds_error) {
        std::cerr << "outbox: presign: no credentials (" << creds_error.message() << "; tried "
                  << chain->name()
                  << "): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile "
                     "(AWS_PROFILE), or run "
                     "where container or instance credentials exist; OUTBOX_DEBUG=1 shows each "
                     "source tried\n";
        return 1;
    }

    if (const auto ec =
            presign_s3_url(request, creds, std::chrono::system_clock::now(), url, &why)) {
        std::cerr << "outbox: presign: " << why << "\n";
        return 1;
    }
    std::cout << url << "\n";
    return 0;
}

}  // namespace outbox::cli
