// The settings every AWS SDK reads from the environment and the shared config file, for the
// configuration fields a user leaves empty (see docs/configuration.md).
#pragma once

#include <string>
#include <string_view>

namespace outbox {

/// A region name: 1 to 64 of a-z, 0-9 and '-' (it becomes part of host names and scopes).
bool is_valid_region(std::string_view region) noexcept;

/// Throws std::invalid_argument("<what> \"<region>\" is not a region name ...") unless valid.
void require_valid_region(std::string_view region, std::string_view what);

struct EnvironmentSetting {
    std::string value{};   // empty: not set anywhere
    std::string source{};  // for messages: "AWS_REGION", "region in profile \"dev\" of FILE"
};

/// AWS_REGION, else AWS_DEFAULT_REGION, else `region` in the profile's section of the shared
/// config file (profile AWS_PROFILE or "default"; file AWS_CONFIG_FILE or ~/.aws/config).
/// Throws std::invalid_argument naming the source when the value is not a region name, or
/// when the config file cannot be read.
EnvironmentSetting region_from_environment();

/// AWS_ENDPOINT_URL_<SERVICE> (SQS, S3, STS), else AWS_ENDPOINT_URL, else `endpoint_url` in
/// the profile's section of the shared config file; nothing when
/// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true. `service_env` is the variable's suffix.
EnvironmentSetting endpoint_from_environment(std::string_view service_env);

/// AWS_REQUEST_CHECKSUM_CALCULATION, else `request_checksum_calculation` in the profile's
/// section of the shared config file: "when_supported" or "when_required" (lower-cased), or
/// empty. Throws std::invalid_argument naming the source for any other value.
EnvironmentSetting request_checksum_calculation_from_environment();

}  // namespace outbox
