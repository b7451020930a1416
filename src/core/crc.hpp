// CRC-32 (ISO-HDLC, as zlib and S3's x-amz-checksum-crc32) and CRC-64/NVME (S3's
// x-amz-checksum-crc64nvme), eight bytes per step from tables made at compile time. The
// checksums S3 verifies on PutObject. Private to the library.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace outbox::detail {

/// CRC-32/ISO-HDLC of `data`; pass a previous result as `crc` to continue it.
std::uint32_t crc32(std::string_view data, std::uint32_t crc = 0) noexcept;

/// CRC-64/NVME of `data`; pass a previous result as `crc` to continue it.
std::uint64_t crc64nvme(std::string_view data, std::uint64_t crc = 0) noexcept;

/// The value of an x-amz-checksum-* header: the checksum's big-endian bytes in base64.
std::string checksum_header_value(std::uint32_t crc);
std::string checksum_header_value(std::uint64_t crc);

}  // namespace outbox::detail
