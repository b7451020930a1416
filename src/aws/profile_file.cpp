#include "aws/profile_file.hpp"

namespace outbox::detail {
namespace {

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) return {};
    const auto last = s.find_last_not_of(" \t\r");
    return s.substr(first, last - first + 1);
}

}  // namespace

ProfileSections parse_profile_file(std::string_view text) {
    ProfileSections sections;
    std::map<std::string, std::string>* current = nullptr;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view raw = text.substr(pos, end - pos);
        pos = end + 1;
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#' || line.front() == ';') continue;
        if (line.front() == '[') {
            const auto close = line.find(']');
            current = close == std::string_view::npos
                          ? nullptr
                          : &sections[std::string(trim(line.substr(1, close - 1)))];
            continue;
        }
        // Indented lines continue a nested property (e.g. s3 =\n  max_concurrent_requests = 4).
        if (current == nullptr || raw.front() == ' ' || raw.front() == '\t') continue;
        const auto eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string key(trim(line.substr(0, eq)));
        for (char& c : key) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        (*current)[key] = std::string(trim(line.substr(eq + 1)));
    }
    return sections;
}

}  // namespace outbox::detail
