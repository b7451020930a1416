// Fuzz target: HttpResponseReader, through which every byte a server sends us passes (SQS,
// S3, the credential endpoints). Its invariants: a response read to the end has a status from
// 100 to 999 and a body within the body limit; the same bytes read whole and handed over a few
// at a time (as a socket may) give the same response, or both a refusal.
#include "http/http_response_reader.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

constexpr std::size_t header_limit = 2048;
constexpr std::size_t body_limit = 4096;

struct Outcome {
    boost::system::error_code ec;
    bool done = false;
    outbox::HttpResponse response;
};

// Reads `input` handed over `piece` bytes at a time, then the end of the stream.
Outcome read(std::string_view input, std::size_t piece, bool head) {
    Outcome o;
    outbox::detail::HttpResponseReader reader(o.response);
    reader.header_limit(header_limit);
    reader.body_limit(body_limit);
    reader.eager(true);
    if (head) reader.skip(true);
    std::string pending;
    std::size_t offered = 0;
    while (!reader.is_done()) {
        if (offered == input.size()) {
            // As Beast's read does: the stream ending before a byte is end_of_stream.
            if (reader.got_some())
                reader.put_eof(o.ec);
            else
                o.ec = boost::beast::http::error::end_of_stream;
            break;
        }
        const std::size_t n = std::min(piece, input.size() - offered);
        pending.append(input.substr(offered, n));
        offered += n;
        for (;;) {
            const std::size_t used = reader.put(boost::asio::buffer(pending), o.ec);
            pending.erase(0, used);
            if (o.ec == boost::beast::http::error::need_more) {
                o.ec = {};
                break;
            }
            if (o.ec) return o;
            if (reader.is_done() || used == 0) break;
        }
    }
    o.done = reader.is_done() && !o.ec;
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    // The first byte picks a start, so random bytes reach the fields, bodies and chunks; its
    // top bit asks for a reply to HEAD. The second picks the piece size.
    static constexpr std::string_view starts[] = {
        "",
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.0 503 Slow Down\r\nConnection: keep-alive\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
    };
    const bool head = (data[0] & 0x80) != 0;
    std::string input(starts[(data[0] & 0x7f) % std::size(starts)]);
    const std::size_t piece = 1 + data[1] % 16;
    input.append(reinterpret_cast<const char*>(data) + 2, size - 2);

    const Outcome whole = read(input, input.size() + 1, head);
    const Outcome pieces = read(input, piece, head);
    for (const Outcome* o : {&whole, &pieces}) {
        if (!o->done) continue;
        if (o->response.status < 100 || o->response.status > 999) std::abort();
        if (o->response.body.size() > body_limit) std::abort();
        if (head && !o->response.body.empty()) std::abort();
    }
    if (whole.done != pieces.done) std::abort();
    if (whole.done && (whole.response.status != pieces.response.status ||
                       whole.response.headers != pieces.response.headers ||
                       whole.response.body != pieces.response.body))
        std::abort();
    return 0;
}
