#include "aws/xml_extract.hpp"

#include <charconv>
#include <cstdint>

namespace outbox::detail {
namespace {

// Position just past the '>' of the first start tag <name> or <name attr...> at or after
// `from`, or npos. A tag <nameX> with a longer name does not match.
std::size_t find_start_tag(std::string_view xml, std::string_view name, std::size_t from) {
    while (from < xml.size()) {
        const std::size_t lt = xml.find('<', from);
        if (lt == std::string_view::npos || lt + 1 + name.size() > xml.size())
            return std::string_view::npos;
        from = lt + 1;
        if (xml.compare(lt + 1, name.size(), name) != 0) continue;
        const std::size_t after = lt + 1 + name.size();
        if (after >= xml.size()) return std::string_view::npos;
        const char c = xml[after];
        if (c != '>' && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '/') continue;
        const std::size_t gt = xml.find('>', after);
        if (gt == std::string_view::npos) return std::string_view::npos;
        if (xml[gt - 1] == '/') return gt + 1;  // <name/>: empty, handled by the caller
        return gt + 1;
    }
    return std::string_view::npos;
}

bool append_decoded(std::string& out, std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t amp = text.find('&', i);
        out.append(
            text.substr(i, amp == std::string_view::npos ? std::string_view::npos : amp - i));
        if (amp == std::string_view::npos) return true;
        const std::size_t semi = text.find(';', amp);
        if (semi == std::string_view::npos || semi - amp > 12) return false;
        const std::string_view entity = text.substr(amp + 1, semi - amp - 1);
        if (entity == "amp")
            out.push_back('&');
        else if (entity == "lt")
            out.push_back('<');
        else if (entity == "gt")
            out.push_back('>');
        else if (entity == "quot")
            out.push_back('"');
        else if (entity == "apos")
            out.push_back('\'');
        else if (entity.size() > 1 && entity[0] == '#') {
            const bool hex = entity[1] == 'x' || entity[1] == 'X';
            const std::string_view digits = entity.substr(hex ? 2 : 1);
            std::uint32_t cp = 0;
            const auto [p, ec] =
                std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
            if (ec != std::errc{} || p != digits.data() + digits.size() || digits.empty() ||
                cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return false;
            if (cp < 0x80) {
                out.push_back(static_cast<char>(cp));
            } else if (cp < 0x800) {
                out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
                out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            } else if (cp < 0x10000) {
                out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
                out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
                out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            } else {
                out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
                out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
                out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
                out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            }
        } else {
            return false;
        }
        i = semi + 1;
    }
    return true;
}

}  // namespace

std::optional<std::string> xml_element_text(std::string_view xml, std::string_view name,
                                            std::string_view within) {
    if (name.empty()) return std::nullopt;
    std::size_t from = 0;
    if (!within.empty()) {
        from = find_start_tag(xml, within, 0);
        if (from == std::string_view::npos) return std::nullopt;
    }
    const std::size_t start = find_start_tag(xml, name, from);
    if (start == std::string_view::npos) return std::nullopt;
    if (xml[start - 2] == '/') return std::string();  // <name/>
    std::string close = "</";
    close.append(name);
    close.push_back('>');
    const std::size_t end = xml.find(close, start);
    if (end == std::string_view::npos) return std::nullopt;
    const std::string_view text = xml.substr(start, end - start);
    if (text.find('<') != std::string_view::npos) return std::nullopt;  // not a text-only element
    std::string out;
    if (!append_decoded(out, text)) return std::nullopt;
    return out;
}

}  // namespace outbox::detail
