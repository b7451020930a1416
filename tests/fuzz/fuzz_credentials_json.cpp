// Fuzz target: the container / instance metadata credentials answer and ISO 8601 dates.
#include "aws/credentials/credentials_parsing.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    outbox::Credentials c;
    if (!outbox::detail::parse_credentials_json(text, c) &&
        (c.access_key_id.empty() || c.secret_access_key.empty()))
        std::abort();
    std::chrono::system_clock::time_point t;
    (void)outbox::detail::parse_iso8601(text, t);
    return 0;
}
