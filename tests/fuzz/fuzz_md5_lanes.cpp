// Fuzz target: MD5 in SIMD lanes, along every path this CPU can take, equals OpenSSL's for
// whatever inputs. The first byte is how many inputs (1 to 32); the rest is cut among them at
// lengths the following bytes choose.
#include "core/md5_lanes.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t count = 1 + data[0] % 32;
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    std::vector<std::string_view> inputs;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t n = rest.empty() ? 0 : static_cast<unsigned char>(rest[0]) * 3;
        if (!rest.empty()) rest.remove_prefix(1);
        n = i + 1 == count ? rest.size() : std::min(n, rest.size());
        inputs.push_back(rest.substr(0, n));
        rest.remove_prefix(n);
    }
    std::vector<outbox::detail::Md5Digest> lanes(count), reference(count);
    outbox::detail::md5_one_by_one(inputs, reference);
    using outbox::detail::Md5Path;
    for (Md5Path path : {Md5Path::avx2, Md5Path::avx512}) {
        if (!outbox::detail::md5_path_available(path)) continue;
        // Poisoned first: a path that left a digest unwritten must not pass on the last one's.
        for (auto& digest : lanes) digest.fill(0xff);
        outbox::detail::md5_many_on(path, inputs, lanes);
        if (lanes != reference) std::abort();
    }
    return 0;
}
