// Fuzz target: PayloadLinks::check, which reads request targets straight from the network.
// Its invariants: it never crashes; a target it finds valid (or expired) names a valid
// bucket and a non-empty key, and the link made again for that object and expiry checks out
// the same; no altered copy of a valid link is valid.
#include <outbox/payload_links.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace std::chrono;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const outbox::PayloadLinks links("", {{"fuzz-key", std::string(40, 'f')}});
    static const auto now = system_clock::time_point(seconds(1796284800));
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    // Half the inputs start as a real link, so the checks past the shape are reached.
    std::string target(input);
    if (size > 0 && data[0] % 2 == 0) {
        const std::string link =
            links.link("fuzz-bucket", std::string(input.substr(1)) + "k", now + hours(1));
        target = link;
        outbox::PayloadLinks::Target made;
        if (links.check(target, now, made) != outbox::PayloadLinkStatus::valid)
            std::abort();  // a link we made must check out
        // Flipping one byte of it (chosen by the input) never leaves it valid.
        std::string altered = target;
        const std::size_t at = data[0] % altered.size();
        altered[at] = static_cast<char>(altered[at] ^ 0x01);
        outbox::PayloadLinks::Target ignored;
        if (links.check(altered, now, ignored) == outbox::PayloadLinkStatus::valid &&
            (ignored.bucket != made.bucket || ignored.key != made.key ||
             ignored.expires != made.expires))
            std::abort();
    }
    outbox::PayloadLinks::Target found;
    const auto status = links.check(target, now, found);
    if (status == outbox::PayloadLinkStatus::valid ||
        status == outbox::PayloadLinkStatus::expired) {
        if (found.bucket.empty() || found.key.empty()) std::abort();
        const std::string again = links.link(found.bucket, found.key, found.expires);
        outbox::PayloadLinks::Target second;
        if (links.check(again, now, second) != status || second.bucket != found.bucket ||
            second.key != found.key || second.expires != found.expires)
            std::abort();
    }
    return 0;
}
