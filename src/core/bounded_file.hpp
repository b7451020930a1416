// Reading small local files that other programs control (profile files, token files): only
// regular files, never more than a bound, never a blocking open. Private to the library.
#pragma once

#include <cstddef>
#include <string>

namespace outbox::detail {

enum class FileRead { ok, missing, refused };

/// Reads `path` into `out`. `missing` when it does not exist; `refused` with `why` when it is
/// not a regular file (a FIFO would block, /dev/zero never ends), larger than `max_bytes`, or
/// unreadable.
FileRead read_bounded_file(const std::string& path, std::size_t max_bytes, std::string& out,
                           std::string& why);

/// The bound for AWS profile files and token files: 1 MiB, far above any real one.
inline constexpr std::size_t max_config_file_bytes = 1024 * 1024;

}  // namespace outbox::detail
