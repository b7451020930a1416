#include "metrics_server.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <charconv>
#include <stdexcept>
#include <vector>

namespace outbox::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

tcp::endpoint parse_listen_address(std::string_view address, std::string_view option) {
    const std::string flag(option);
    const std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        throw std::invalid_argument(flag + " needs HOST:PORT, such as 127.0.0.1:9464");
    std::string_view host = address.substr(0, colon), port_text = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
        throw std::invalid_argument(flag + ": \"" + std::string(port_text) + "\" is not a port");
    error_code bad;
    const auto ip = asio::ip::make_address(std::string(host), bad);
    if (bad)
        throw std::invalid_argument(flag + ": \"" + std::string(host) +
                                    "\" is not an IP address (a name would be resolved anew "
                                    "at each start)");
    return {ip, static_cast<std::uint16_t>(port)};
}

struct MetricsServer::State : std::enable_shared_from_this<State> {
    State(asio::io_context& io, Render r) : acceptor(io), pause(io), render(std::move(r)) {}
    static constexpr std::size_t max_connections = 16;  // a scraper needs one
    tcp::acceptor acceptor;
    asio::steady_timer pause;  // after a failed accept (out of descriptors, say)
    Render render;
    bool stopped = false;
    std::vector<std::weak_ptr<beast::tcp_stream>> streams;  // closed by stop()

    void accept() {
        acceptor.async_accept([self = shared_from_this()](error_code ec, tcp::socket socket) {
            if (self->stopped) return;
            if (ec) {  // not fatal: try again shortly, rather than serve nothing for good
                self->pause.expires_after(std::chrono::milliseconds(100));
                self->pause.async_wait([self](error_code wait_ec) {
                    if (!wait_ec && !self->stopped) self->accept();
                });
                return;
            }
            std::erase_if(self->streams, [](const auto& w) { return w.expired(); });
            if (self->streams.size() >= max_connections) {
                error_code ignored;
                socket.close(ignored);  // a scraper needs one; more would only hold the relay
            } else {
                auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
                self->streams.push_back(stream);
                self->serve(std::move(stream));
            }
            self->accept();
        });
    }

    void serve(std::shared_ptr<beast::tcp_stream> stream) {
        auto buffer = std::make_shared<beast::flat_buffer>();
        auto request = std::make_shared<http::request<http::string_body>>();
        stream->expires_after(std::chrono::seconds(10));
        http::async_read(
            *stream, *buffer, *request,
            [self = shared_from_this(), stream, buffer, request](error_code ec, std::size_t) {
                if (ec || self->stopped) return;
                if (request->method() != http::verb::get || request->target() != "/metrics") {
                    auto reply = std::make_shared<http::response<http::string_body>>(
                        http::status::not_found, request->version());
                    reply->set(http::field::content_type, "text/plain");
                    reply->body() = "outbox: only GET /metrics is served here\n";
                    return self->answer(stream, reply);
                }
                self->render([self, stream, version = request->version()](std::string text) {
                    auto reply = std::make_shared<http::response<http::string_body>>(
                        http::status::ok, version);
                    reply->set(http::field::content_type, "text/plain; version=0.0.4");
                    reply->body() = std::move(text);
                    self->answer(stream, reply);
                });
            });
    }

    void answer(std::shared_ptr<beast::tcp_stream> stream,
                std::shared_ptr<http::response<http::string_body>> reply) {
        reply->keep_alive(false);
        reply->prepare_payload();
        stream->expires_after(std::chrono::seconds(10));
        http::async_write(*stream, *reply, [stream, reply](error_code, std::size_t) {
            error_code ignored;
            stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
        });
    }
};

MetricsServer::MetricsServer(asio::io_context& io, std::string_view address, Render render)
    : state_(std::make_shared<State>(io, std::move(render))) {
    const tcp::endpoint where = parse_listen_address(address, "--metrics");
    state_->acceptor.open(where.protocol());
    state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    state_->acceptor.bind(where);
    state_->acceptor.listen();
    state_->accept();
}

MetricsServer::~MetricsServer() {
    stop();
}

void MetricsServer::stop() {
    if (state_->stopped) return;
    state_->stopped = true;
    error_code ignored;
    state_->acceptor.close(ignored);
    state_->pause.cancel();
    for (auto& weak : state_->streams)
        if (auto stream = weak.lock()) stream->socket().close(ignored);
}

std::uint16_t MetricsServer::port() const {
    error_code ignored;
    return state_->acceptor.local_endpoint(ignored).port();
}

}  // namespace outbox::cli
