// Pulls the text of one element out of a small, trusted-shape XML document (STS and S3
// answers) without a general XML parser. Not API.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace outbox::detail {

/// The text of the first element named `name` inside `xml` (after the first element named
/// `within`, when given), with the five predefined entities and numeric character
/// references decoded. Empty optional when not found or not well formed.
std::optional<std::string> xml_element_text(std::string_view xml, std::string_view name,
                                            std::string_view within = {});

}  // namespace outbox::detail
