// Fuzz target: decoding a stored event's attributes (bytes read back from the store's file,
// which a disk or another program may have damaged). Whatever it accepts re-encodes to the
// same bytes; nothing it reads goes past the input.
#include "outbox/event_codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::vector<outbox::MessageAttribute> attributes;
    if (!outbox::detail::decode_attributes(in, attributes)) return 0;
    std::string again;
    outbox::detail::encode_attributes(attributes, again);
    if (again != in && !(attributes.empty() && in == std::string_view("\0\0\0\0", 4))) std::abort();
    return 0;
}
