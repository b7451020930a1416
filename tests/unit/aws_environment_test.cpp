// Region and endpoint from the environment and the shared config file, in the order the AWS
// SDKs read them; region names checked wherever they come from.
#include <outbox/aws_environment.hpp>

#include "catch.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

using namespace outbox;

namespace {

// Every variable read here starts unset; the old values come back at the end.
class CleanEnvironment {
  public:
    CleanEnvironment() {
        for (const char* name : names) {
            if (const char* v = std::getenv(name)) saved_.emplace_back(name, v);
            ::unsetenv(name);
        }
    }
    ~CleanEnvironment() {
        for (const char* name : names) ::unsetenv(name);
        for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
    }

  private:
    static constexpr const char* names[] = {"AWS_REGION",
                                            "AWS_DEFAULT_REGION",
                                            "AWS_PROFILE",
                                            "AWS_CONFIG_FILE",
                                            "HOME",
                                            "AWS_ENDPOINT_URL",
                                            "AWS_ENDPOINT_URL_SQS",
                                            "AWS_ENDPOINT_URL_S3",
                                            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"};
    std::vector<std::pair<std::string, std::string>> saved_;
};

std::string write_config(const std::string& text) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("outbox-aws-config-" + std::to_string(::getpid()));
    std::ofstream(path) << text;
    return path.string();
}

}  // namespace

TEST_CASE("region names") {
    for (const char* ok : {"us-east-1", "eu-west-2", "cn-north-1", "us-gov-west-1", "local"})
        CHECK(is_valid_region(ok));
    for (const char* bad : {"", "us-east-1/evil", "US-EAST-1", "us east", "a.b", "us-east-1\n"})
        CHECK_FALSE(is_valid_region(bad));
    CHECK_FALSE(is_valid_region(std::string(65, 'a')));
    CHECK_THROWS_WITH(require_valid_region("x/y", "--region"),
                      "--region \"x/y\" is not a region name (1 to 64 of a-z, 0-9 and '-')");
}

TEST_CASE("region: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region") {
    CleanEnvironment clean;
    const std::string config = write_config(
        "[default]\nregion = eu-central-1\n[profile dev]\nregion = ap-south-1\n"
        "[profile bad]\nregion = eu/west\n");
    ::setenv("AWS_CONFIG_FILE", config.c_str(), 1);
    CHECK(region_from_environment().value == "eu-central-1");
    CHECK(region_from_environment().source == "region in profile \"default\" of " + config);
    ::setenv("AWS_PROFILE", "dev", 1);
    CHECK(region_from_environment().value == "ap-south-1");
    ::setenv("AWS_DEFAULT_REGION", "us-west-2", 1);
    CHECK(region_from_environment().value == "us-west-2");
    ::setenv("AWS_REGION", "eu-north-1", 1);
    CHECK(region_from_environment().value == "eu-north-1");
    CHECK(region_from_environment().source == "AWS_REGION");
    ::setenv("AWS_REGION", "eu-north-1/../x", 1);
    CHECK_THROWS_WITH(region_from_environment(),
                      Catch::Contains("the region from AWS_REGION \"eu-north-1/../x\""));
    ::unsetenv("AWS_REGION");
    ::unsetenv("AWS_DEFAULT_REGION");
    ::setenv("AWS_PROFILE", "bad", 1);
    CHECK_THROWS_WITH(region_from_environment(), Catch::Contains("profile \"bad\""));
    ::setenv("AWS_PROFILE", "none", 1);
    CHECK(region_from_environment().value.empty());
    ::setenv("AWS_CONFIG_FILE", "/dev/zero", 1);
    CHECK_THROWS_WITH(region_from_environment(),
                      Catch::Contains("cannot read the AWS config file /dev/zero"));
    std::filesystem::remove(config);
}

TEST_CASE("endpoint: the service's variable, AWS_ENDPOINT_URL, the profile, unless ignored") {
    CleanEnvironment clean;
    const std::string config = write_config("[default]\nendpoint_url = http://127.0.0.1:9000\n");
    ::setenv("AWS_CONFIG_FILE", config.c_str(), 1);
    CHECK(endpoint_from_environment("SQS").value == "http://127.0.0.1:9000");
    ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566", 1);
    CHECK(endpoint_from_environment("SQS").value == "http://127.0.0.1:4566");
    ::setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4567", 1);
    CHECK(endpoint_from_environment("SQS").value == "http://127.0.0.1:4567");
    CHECK(endpoint_from_environment("SQS").source == "AWS_ENDPOINT_URL_SQS");
    CHECK(endpoint_from_environment("S3").value == "http://127.0.0.1:4566");
    ::setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE", 1);
    CHECK(endpoint_from_environment("SQS").value.empty());
    std::filesystem::remove(config);
}
