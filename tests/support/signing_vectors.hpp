// Readers for the AWS SigV4 test vectors in tests/data/aws-signing-test-suite.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace outbox::test {

/// A request in the suites' HTTP/1.1 text form.
struct HttpText {
    std::string method;
    std::string path;                                          // before '?', raw as written
    std::string query;                                         // after '?'
    std::vector<std::pair<std::string, std::string>> headers;  // obs-fold lines joined with '\n'
    std::string body;
};

HttpText parse_http_text(const std::string& text);

std::string read_file(const std::filesystem::path& p);

std::filesystem::path vectors_dir();  // tests/data/aws-signing-test-suite

}  // namespace outbox::test
