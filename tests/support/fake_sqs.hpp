// Replies of an SQS that accepts every message or is down, for a TestHttpServer standing in
// for a customer's queue that fails and comes back (fauxqs cannot be made to fail).
#pragma once

#include "test_http_server.hpp"

#include <openssl/evp.h>
#include <simdjson.h>

#include <functional>
#include <string>

namespace outbox::test {

inline std::string md5_hex(const std::string& data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned length = 0;
    EVP_Digest(data.data(), data.size(), digest, &length, EVP_md5(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 15]);
    }
    return out;
}

/// SQS's answer to a SendMessage or SendMessageBatch request that accepts every message;
/// `accepted` (if set) sees each body.
inline TestReply sqs_accept_all(const TestRequest& request,
                                const std::function<void(const std::string&)>& accepted = {}) {
    simdjson::dom::parser parser;
    simdjson::dom::element body = parser.parse(request.body);
    auto take = [&](simdjson::dom::element message) {
        const std::string text{std::string_view(message["MessageBody"])};
        if (accepted) accepted(text);
        return md5_hex(text);
    };
    TestReply reply;
    reply.headers = {{"Content-Type", "application/x-amz-json-1.0"}};
    if (request.header("X-Amz-Target").ends_with("SendMessageBatch")) {
        std::string entries;
        for (simdjson::dom::element entry : body["Entries"].get_array()) {
            if (!entries.empty()) entries += ",";
            entries += std::string("{\"Id\":\"") + std::string(std::string_view(entry["Id"])) +
                       "\",\"MessageId\":\"m\",\"MD5OfMessageBody\":\"" + take(entry) + "\"}";
        }
        reply.body = "{\"Successful\":[" + entries + "],\"Failed\":[]}";
    } else {
        reply.body = "{\"MessageId\":\"m\",\"MD5OfMessageBody\":\"" + take(body) + "\"}";
    }
    return reply;
}

/// A 503 with SQS's error body.
inline TestReply sqs_unavailable(const TestRequest& = {}) {
    TestReply r;
    r.status = 503;
    r.headers = {{"Content-Type", "application/x-amz-json-1.0"}};
    r.body =
        R"({"__type":"com.amazonaws.sqs#ServiceUnavailable","message":"down for maintenance"})";
    return r;
}

}  // namespace outbox::test
