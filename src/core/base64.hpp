// Base64 (RFC 4648, with padding) appended to a string, by OpenSSL. Private to the library.
#pragma once

#include <openssl/evp.h>

#include <string>
#include <string_view>

namespace outbox::detail {

inline void append_base64(std::string& out, std::string_view bytes) {
    const std::size_t start = out.size();
    out.resize(start + 4 * ((bytes.size() + 2) / 3) + 1);  // EVP_EncodeBlock writes a NUL
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + start),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(start + static_cast<std::size_t>(n));
}

}  // namespace outbox::detail
