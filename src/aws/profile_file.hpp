// The AWS shared config/credentials file format (INI-like). Not API.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace outbox::detail {

/// section name (as written between the brackets, trimmed) -> key -> value. Keys are
/// lower-cased; values trimmed; full-line comments (# or ;) and indented sub-properties
/// are skipped; a later duplicate key wins.
using ProfileSections = std::map<std::string, std::map<std::string, std::string>>;

ProfileSections parse_profile_file(std::string_view text);

}  // namespace outbox::detail
