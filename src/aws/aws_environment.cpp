#include <outbox/aws_environment.hpp>

#include "core/bounded_file.hpp"

#include "aws/profile_file.hpp"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace outbox {
namespace {

using detail::FileRead;
using detail::max_config_file_bytes;
using detail::parse_profile_file;
using detail::ProfileSections;
using detail::read_bounded_file;

std::optional<std::string> variable(const std::string& name) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
}

// A key of the active profile's section in the shared config file.
EnvironmentSetting from_profile(const char* key) {
    std::string path;
    if (auto file = variable("AWS_CONFIG_FILE")) {
        path = *file;
    } else if (auto home = variable("HOME")) {
        path = *home + "/.aws/config";
    } else {
        return {};
    }
    std::string text, why;
    switch (read_bounded_file(path, max_config_file_bytes, text, why)) {
        case FileRead::missing:
            return {};
        case FileRead::refused:
            throw std::invalid_argument("cannot read the AWS config file " + path + ": " + why);
        case FileRead::ok:
            break;
    }
    const std::string profile = variable("AWS_PROFILE").value_or("default");
    const ProfileSections sections = parse_profile_file(text);
    for (const std::string& name :
         {"profile " + profile, profile == "default" ? profile : std::string()}) {
        if (name.empty()) continue;
        const auto section = sections.find(name);
        if (section == sections.end()) continue;
        const auto value = section->second.find(key);
        if (value == section->second.end() || value->second.empty()) return {};
        return {value->second, std::string(key) + " in profile \"" + profile + "\" of " + path};
    }
    return {};
}

}  // namespace

bool is_valid_region(std::string_view region) noexcept {
    return !region.empty() && region.size() <= 64 &&
           std::all_of(region.begin(), region.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
           });
}

void require_valid_region(std::string_view region, std::string_view what) {
    if (!is_valid_region(region))
        throw std::invalid_argument(std::string(what) + " \"" + std::string(region) +
                                    "\" is not a region name (1 to 64 of a-z, 0-9 and '-')");
}

EnvironmentSetting region_from_environment() {
    EnvironmentSetting found;
    for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
        if (auto v = variable(name)) {
            found = {*v, name};
            break;
        }
    }
    if (found.value.empty()) found = from_profile("region");
    if (!found.value.empty()) require_valid_region(found.value, "the region from " + found.source);
    return found;
}

EnvironmentSetting request_checksum_calculation_from_environment() {
    EnvironmentSetting found;
    if (auto v = variable("AWS_REQUEST_CHECKSUM_CALCULATION"))
        found = {*v, "AWS_REQUEST_CHECKSUM_CALCULATION"};
    else
        found = from_profile("request_checksum_calculation");
    for (char& c : found.value) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (!found.value.empty() && found.value != "when_supported" && found.value != "when_required")
        throw std::invalid_argument("the request checksum calculation from " + found.source +
                                    " is \"" + found.value +
                                    "\"; it must be when_supported or when_required");
    return found;
}

EnvironmentSetting endpoint_from_environment(std::string_view service_env) {
    if (auto ignore = variable("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) {
        std::string v = *ignore;
        for (char& c : v) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
        if (v == "true") return {};
    }
    const std::string specific = "AWS_ENDPOINT_URL_" + std::string(service_env);
    if (auto v = variable(specific)) return {*v, specific};
    if (auto v = variable("AWS_ENDPOINT_URL")) return {*v, "AWS_ENDPOINT_URL"};
    return from_profile("endpoint_url");
}

}  // namespace outbox
