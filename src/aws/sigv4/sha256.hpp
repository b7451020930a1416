// SHA-256 and HMAC-SHA256 on OpenSSL's low-level digest, which runs the CPU's SHA
// instructions without the EVP provider lookups that cost more than the hash itself
// on short SigV4 inputs. Private to the library.
#pragma once

#include <openssl/sha.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace outbox::detail {

using Sha256Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

class Sha256 {
  public:
    Sha256() noexcept { SHA256_Init(&ctx_); }
    void update(std::string_view data) noexcept { SHA256_Update(&ctx_, data.data(), data.size()); }
    void update(const Sha256Digest& d) noexcept { SHA256_Update(&ctx_, d.data(), d.size()); }
    Sha256Digest finish() noexcept {
        Sha256Digest d;
        SHA256_Final(d.data(), &ctx_);
        return d;
    }

  private:
    SHA256_CTX ctx_;
};

inline Sha256Digest sha256(std::string_view data) noexcept {
    Sha256 h;
    h.update(data);
    return h.finish();
}

/// HMAC-SHA256 with the key's inner and outer pads absorbed once, so each MAC costs
/// only the message blocks plus one block for the outer hash.
class HmacSha256 {
  public:
    HmacSha256() noexcept = default;
    explicit HmacSha256(std::string_view key) noexcept { set_key(key); }
    explicit HmacSha256(const Sha256Digest& key) noexcept {
        set_key({reinterpret_cast<const char*>(key.data()), key.size()});
    }

    void set_key(std::string_view key) noexcept;
    Sha256Digest mac(std::string_view message) const noexcept;

  private:
    SHA256_CTX inner_{};
    SHA256_CTX outer_{};
};

/// Appends `bytes` as lowercase hex.
void append_hex(std::string& out, const Sha256Digest& bytes);

}  // namespace outbox::detail
