#include "aws/s3/s3_protocol.hpp"
#include <outbox/error.hpp>
#include "aws/sigv4/sigv4_canonical.hpp"
#include "aws/xml_extract.hpp"

#include <outbox/aws_environment.hpp>

#include <cstdio>

namespace outbox::detail::s3 {

bool is_valid_bucket_name(std::string_view b) noexcept {
    if (b.size() < 3 || b.size() > 63 || b.find("..") != std::string_view::npos) return false;
    for (char c : b)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    return alnum(b.front()) && alnum(b.back());
}

boost::system::error_code bucket_address(std::string_view bucket, std::string_view region,
                                         std::string_view endpoint, bool path_style,
                                         BucketAddress& out) {
    if (!endpoint.empty()) {
        std::string path;
        if (parse_http_url(endpoint, out.origin, path) ||
            path.find_first_of("?#") != std::string::npos)
            return Errc::invalid_url;
        while (!path.empty() && path.back() == '/') path.pop_back();
        out.path_prefix = std::move(path);
        out.path_prefix.append("/").append(bucket).append("/");
        return {};
    }
    // The region becomes part of the host name: nothing but a region name.
    if (!is_valid_region(region)) return Errc::invalid_argument;
    out.origin.tls = true;
    out.origin.port = 443;
    // Built in locals and moved: GCC 12 at -O3 reports false -Wrestrict overlaps for string
    // literals assigned or concatenated into these members (GCC bug 105651).
    std::string host, prefix(1, '/');
    if (path_style || bucket.find('.') != std::string_view::npos) {
        host.append("s3.").append(region).append(".amazonaws.com");
        prefix.append(bucket).push_back('/');
    } else {
        host.append(bucket).append(".s3.").append(region).append(".amazonaws.com");
    }
    out.origin.host = std::move(host);
    out.path_prefix = std::move(prefix);
    return {};
}

std::string expand_key_template(std::string_view key_template, std::string_view prefix,
                                std::chrono::system_clock::time_point now, std::string_view uuid) {
    using namespace std::chrono;
    const auto day = floor<days>(now);
    const year_month_day ymd(day);
    const auto hour = duration_cast<hours>(now - day).count();
    char buf[8];
    auto two = [&](unsigned v) {
        std::snprintf(buf, sizeof buf, "%02u", v);
        return std::string(buf);
    };
    std::string out;
    for (std::size_t i = 0; i < key_template.size();) {
        auto take = [&](std::string_view name) {
            if (key_template.substr(i).starts_with(name)) {
                i += name.size();
                return true;
            }
            return false;
        };
        if (take("{prefix}"))
            out += prefix;
        else if (take("{yyyy}"))
            out += std::to_string(static_cast<int>(ymd.year()));
        else if (take("{mm}"))
            out += two(static_cast<unsigned>(ymd.month()));
        else if (take("{dd}"))
            out += two(static_cast<unsigned>(ymd.day()));
        else if (take("{hh}"))
            out += two(static_cast<unsigned>(hour));
        else if (take("{uuid}"))
            out += uuid;
        else
            out += key_template[i++];
    }
    std::string key;
    for (char c : out)
        if (c != '/' || (!key.empty() && key.back() != '/')) key += c;
    return key;
}

std::string tagging_header(const std::vector<std::pair<std::string, std::string>>& tags) {
    std::string out;
    for (const auto& [k, v] : tags) {
        if (!out.empty()) out += '&';
        sigv4::append_uri_encoded(out, k, false);
        out += '=';
        sigv4::append_uri_encoded(out, v, false);
    }
    return out;
}

boost::system::error_code parse_error_response(const HttpResponse& response, Diagnostics& out) {
    out.http_status = response.status;
    out.request_id = std::string(response.header("x-amz-request-id"));
    if (auto code = xml_element_text(response.body, "Code", "Error")) out.code = std::move(*code);
    if (auto message = xml_element_text(response.body, "Message", "Error")) {
        out.service_message = *message;
        out.message = std::move(*message);
    }
    if (out.request_id.empty())
        if (auto id = xml_element_text(response.body, "RequestId", "Error"))
            out.request_id = std::move(*id);
    if (out.code.empty()) out.code = "HTTP " + std::to_string(response.status);
    if (out.code == "SlowDown" || response.status == 429 || out.code == "RequestLimitExceeded" ||
        out.code == "Throttling" || out.code == "ThrottlingException")
        return Errc::throttled;
    // 501: the store does not implement something asked for (a header): no retry will help.
    if (response.status == 501 || out.code == "NotImplemented") return Errc::service_error;
    if (response.status >= 500 || out.code == "InternalError" || out.code == "ServiceUnavailable")
        return Errc::service_unavailable;
    return Errc::service_error;
}

}  // namespace outbox::detail::s3
