// Fuzz target: the JSON writer and the envelopes built on it. Whatever the bytes (control
// characters, invalid UTF-8), the output parses, and valid UTF-8 comes back unchanged.
#include <outbox/envelope.hpp>
#include <outbox/json_string.hpp>

#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    static simdjson::dom::parser parser;

    std::string out;
    const bool valid = outbox::append_json_string(out, text);
    for (char c : out)
        if (static_cast<unsigned char>(c) < 0x20) std::abort();  // never a raw control character
    std::string_view back;
    if (parser.parse(out).get_string().get(back) != simdjson::SUCCESS) std::abort();
    if (valid != simdjson::validate_utf8(text.data(), text.size())) std::abort();
    if (valid && back != text) std::abort();  // round trip

    const std::string staged = outbox::staged_payload_message(text, std::chrono::seconds(600));
    simdjson::dom::object o;
    if (parser.parse(staged).get_object().get(o) != simdjson::SUCCESS) std::abort();
    if (valid && std::string_view(o["url"].get_string().value_unsafe()) != text) std::abort();

    outbox::CloudEventAttributes a;
    a.id = "1";
    a.source = std::string(text.substr(0, 16));
    a.type = "t";
    a.time = "2026-11-22T00:00:00Z";
    const std::string event = outbox::cloudevents_structured(a, text);
    if (parser.parse(event).get_object().get(o) != simdjson::SUCCESS) std::abort();
    return 0;
}
