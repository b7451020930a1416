// 05: a payload too large for the queue goes to S3; the queue receives a small message with
// a pre-signed GET URL: {"status":"success","type":"s3_payload","url":"…","expires_in":600}.
//
//   05_staged_payload QUEUE_URL BUCKET [S3_ENDPOINT]
#include <outbox/credentials_providers.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <memory>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: %s QUEUE_URL BUCKET [S3_ENDPOINT]\n", argv[0]);
        return 2;
    }
    asio::io_context io;
    auto credentials = outbox::make_default_credentials(io.get_executor());

    outbox::PayloadStagerConfig s3;
    s3.bucket = argv[2];
    s3.prefix = "examples";
    if (argc == 4) s3.endpoint = argv[3];  // a local S3 such as s3rver, addressed path-style
    s3.credentials = credentials;
    s3.url_expires = 600s;
    auto stager = std::make_shared<outbox::PayloadStager>(io.get_executor(), s3);

    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = credentials;
    config.stager = stager;
    // Bodies over 256 KiB are staged, even on a queue that takes up to 1 MiB (without a
    // threshold: bodies over the queue's own limit).
    config.staging_threshold = 256 * 1024;
    outbox::SqsDestination queue(io.get_executor(), config);

    outbox::Message report;
    report.body = R"({"type":"report.generated","rows":")" + std::string(300 * 1024, 'x') + "\"}";
    int status = 1;
    queue.async_send(std::move(report), [&](boost::system::error_code ec, outbox::Receipt r) {
        if (ec) {
            std::printf("failed: %s (%s)\n", ec.message().c_str(), r.diagnostics.message.c_str());
            return;
        }
        std::printf("staged as s3://%s/%s\nthe queue received a link to it: %s...\n", argv[2],
                    r.staged_key.c_str(), r.staged_url.substr(0, 60).c_str());
        status = r.staged_url.empty() ? 1 : 0;
    });
    queue.async_close(10s, [&](boost::system::error_code) { stager->close(); });
    io.run();
    return status;
}
