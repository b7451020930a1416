// Fuzz target: the PostgreSQL store's attributes column (JSON an application wrote through
// outbox.enqueue, read back by the relay) and the connection-string redaction. What the parser
// accepts writes back to JSON it reads to the same attributes; a redacted string never still
// holds what followed "password=".
#include "outbox/postgresql_text.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<outbox::MessageAttribute> attributes;
    std::string why;
    if (outbox::detail::parse_attributes_json(in, attributes, why)) {
        std::string json;
        outbox::detail::append_attributes_json(attributes, json);
        std::vector<outbox::MessageAttribute> again;
        if (!json.empty() && !outbox::detail::parse_attributes_json(json, again, why)) std::abort();
        if (json.empty() && !attributes.empty()) std::abort();
    } else if (why.empty()) {
        std::abort();  // a refusal always says why
    }
    std::string array;
    outbox::detail::append_array_text(array, in);
    if (array.size() < 2 || array.front() != '"' || array.back() != '"') std::abort();
    // A password given as password=hunter2 (and nowhere else) is gone after redaction.
    const std::string redacted = outbox::detail::redact_connection_string(in);
    const auto at = in.find("password=hunter2");
    if (at != std::string_view::npos && in.find("hunter2") == at + 9 &&
        in.find("hunter2", at + 10) == std::string_view::npos &&
        redacted.find("hunter2") != std::string::npos)
        std::abort();
    return 0;
}
