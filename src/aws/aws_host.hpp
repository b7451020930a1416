// The region in an AWS service's host name, shared by the SQS destination and the STS
// providers. Private to the library.
#pragma once

#include <string>
#include <string_view>

namespace outbox::detail {

/// "eu-west-1" from SERVICE.eu-west-1.amazonaws.com (also SERVICE-fips., .amazonaws.com.cn and
/// .api.aws); empty for any other host.
inline std::string region_in_aws_host(std::string_view host, std::string_view service) {
    auto strip_suffix = [&](std::string_view suffix) {
        if (!host.ends_with(suffix)) return false;
        host.remove_suffix(suffix.size());
        return true;
    };
    auto strip_prefix = [&](std::string_view prefix) {
        if (!host.starts_with(prefix)) return false;
        host.remove_prefix(prefix.size());
        return true;
    };
    if (!strip_suffix(".amazonaws.com") && !strip_suffix(".amazonaws.com.cn") &&
        !strip_suffix(".api.aws"))
        return {};
    const std::string dot = std::string(service) + ".";
    const std::string fips = std::string(service) + "-fips.";
    if (!strip_prefix(dot) && !strip_prefix(fips)) return {};
    if (host.empty() || host.find('.') != std::string_view::npos) return {};
    return std::string(host);
}

}  // namespace outbox::detail
