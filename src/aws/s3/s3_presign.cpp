// presign_s3_url: the object's address as PayloadStager finds it, then SigV4 query signing.
#include <outbox/aws_environment.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sigv4.hpp>

#include "aws/s3/s3_protocol.hpp"
#include "aws/sigv4/sigv4_canonical.hpp"

namespace outbox {

boost::system::error_code presign_s3_url(const S3PresignRequest& request,
                                         const Credentials& credentials,
                                         std::chrono::system_clock::time_point now,
                                         std::string& url, std::string* why) {
    auto refuse = [&](Errc errc, std::string text) {
        if (why != nullptr) *why = std::move(text);
        return make_error_code(errc);
    };
    if (!detail::s3::is_valid_bucket_name(request.bucket))
        return refuse(Errc::invalid_argument,
                      "bucket \"" + request.bucket +
                          "\" is not a valid S3 bucket name (3-63 of a-z 0-9 . -)");
    if (request.key.empty()) return refuse(Errc::invalid_argument, "the object key is empty");
    if (!is_valid_region(request.region))
        return refuse(Errc::invalid_argument, "region \"" + request.region +
                                                  "\" is not a region name (1 to 64 of a-z, "
                                                  "0-9 and '-')");
    detail::s3::BucketAddress address;
    if (detail::s3::bucket_address(request.bucket, request.region, request.endpoint,
                                   request.addressing == S3Addressing::path_style, address))
        return refuse(Errc::invalid_url, "endpoint \"" + request.endpoint +
                                             "\" is not a plain http(s) URL without query or "
                                             "fragment");
    const std::string host_header = address.origin.host_header();
    std::string path = std::move(address.path_prefix);
    detail::sigv4::append_uri_encoded(path, request.key, true);

    const sigv4::Signer signer(
        {.region = request.region, .service = "s3", .path_rule = sigv4::PathRule::s3});
    sigv4::PresignedQuery query;
    if (auto ec = signer.presign({.method = request.method, .host = host_header, .path = path},
                                 credentials, now, request.expires, query)) {
        if (why != nullptr) *why = ec.message();
        return ec;
    }
    url = std::string(address.origin.tls ? "https://" : "http://") + host_header + path + "?" +
          query.query;
    return {};
}

}  // namespace outbox
