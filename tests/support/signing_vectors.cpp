#include "signing_vectors.hpp"

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace outbox::test {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + p.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::filesystem::path vectors_dir() {
    return std::filesystem::path(OUTBOX_TEST_DATA_DIR) / "aws-signing-test-suite";
}

HttpText parse_http_text(const std::string& text) {
    HttpText r;
    std::size_t pos = 0;
    auto next_line = [&](std::string& line) {
        if (pos > text.size()) return false;
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        line = text.substr(pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        pos = end + 1;
        return true;
    };
    std::string line;
    if (!next_line(line)) throw std::runtime_error("empty request");
    // "METHOD TARGET HTTP/1.1"; the target may contain spaces (get-space).
    const std::size_t sp = line.find(' ');
    const std::size_t proto = line.rfind(" HTTP/");
    r.method = line.substr(0, sp);
    const std::string target = line.substr(sp + 1, proto - sp - 1);
    const std::size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    while (next_line(line) && !line.empty()) {
        if ((line[0] == ' ' || line[0] == '\t') && !r.headers.empty()) {
            r.headers.back().second += "\n" + line;  // obs-fold continuation
            continue;
        }
        const std::size_t colon = line.find(':');
        r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
    if (pos < text.size()) r.body = text.substr(pos);
    return r;
}

}  // namespace outbox::test
