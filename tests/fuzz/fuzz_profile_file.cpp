// Fuzz target: the shared config / credentials file parser.
#include "aws/profile_file.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto sections = outbox::detail::parse_profile_file(
        std::string_view(reinterpret_cast<const char*>(data), size));
    for (const auto& [name, keys] : sections) {
        for (const auto& [key, value] : keys) {
            // Keys are lower-cased and never empty of meaning: no '=' and no upper case.
            for (char ch : key)
                if ((ch >= 'A' && ch <= 'Z') || ch == '=' || ch == '\n') std::abort();
            if (value.find('\n') != std::string::npos) std::abort();
        }
    }
    return 0;
}
