#include "aws/sigv4/sha256.hpp"

#include <openssl/crypto.h>

#include <array>
#include <cstring>

namespace outbox::detail {

void HmacSha256::set_key(std::string_view key) noexcept {
    constexpr std::size_t block = SHA256_CBLOCK;  // 64
    unsigned char k[block] = {};
    if (key.size() > block) {
        const Sha256Digest d = sha256(key);
        std::memcpy(k, d.data(), d.size());
    } else {
        std::memcpy(k, key.data(), key.size());
    }
    unsigned char pad[block];
    for (std::size_t i = 0; i < block; ++i) pad[i] = k[i] ^ 0x36;
    SHA256_Init(&inner_);
    SHA256_Update(&inner_, pad, block);
    for (std::size_t i = 0; i < block; ++i) pad[i] = k[i] ^ 0x5c;
    SHA256_Init(&outer_);
    SHA256_Update(&outer_, pad, block);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
}

Sha256Digest HmacSha256::mac(std::string_view message) const noexcept {
    Sha256Digest inner_digest;
    SHA256_CTX ctx = inner_;
    SHA256_Update(&ctx, message.data(), message.size());
    SHA256_Final(inner_digest.data(), &ctx);
    ctx = outer_;
    SHA256_Update(&ctx, inner_digest.data(), inner_digest.size());
    Sha256Digest out;
    SHA256_Final(out.data(), &ctx);
    return out;
}

namespace {
// "00".."ff", two characters per byte: one store per byte instead of two lookups.
constexpr std::array<char, 512> make_hex_pairs() {
    constexpr char digits[] = "0123456789abcdef";
    std::array<char, 512> t{};
    for (int b = 0; b < 256; ++b) {
        t[2 * b] = digits[b >> 4];
        t[2 * b + 1] = digits[b & 0xf];
    }
    return t;
}
constexpr std::array<char, 512> hex_pairs = make_hex_pairs();
}  // namespace

void append_hex(std::string& out, const Sha256Digest& bytes) {
    char text[2 * std::tuple_size_v<Sha256Digest>];
    char* p = text;
    for (unsigned char b : bytes) {
        std::memcpy(p, &hex_pairs[2 * b], 2);
        p += 2;
    }
    out.append(text, sizeof text);  // one append: no zero-fill of room later overwritten
}

}  // namespace outbox::detail
