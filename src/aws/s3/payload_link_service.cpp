// PayloadLinkService: checks a link (PayloadLinks, no I/O), then answers with a redirect to a
// URL pre-signed just now. One request per connection; every step on one strand.
#include <outbox/payload_links.hpp>

#include "core/strand_executor.hpp"
#include "core/thrown_text.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <stdexcept>

namespace outbox {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

struct PayloadLinkService::State : std::enable_shared_from_this<State> {
    State(asio::any_io_executor ex, PayloadLinkServiceConfig c)
        : strand(detail::make_strand_executor(ex)),
          acceptor(strand),
          pause(strand),
          config(std::move(c)) {}

    static constexpr std::size_t max_connections = 64;
    asio::any_io_executor strand;
    tcp::acceptor acceptor;
    asio::steady_timer pause;  // after a failed accept (out of descriptors, say)
    PayloadLinkServiceConfig config;
    bool stopped = false;
    std::uint16_t port = 0;                                 // set by listen(), read from any thread
    std::vector<std::weak_ptr<beast::tcp_stream>> streams;  // closed by stop()

    using Reply = http::response<http::string_body>;

    void accept() {
        acceptor.async_accept(asio::bind_executor(
            strand, [self = shared_from_this()](error_code ec, tcp::socket socket) {
                if (self->stopped) return;
                if (ec) {
                    self->pause.expires_after(std::chrono::milliseconds(100));
                    self->pause.async_wait([self](error_code wait_ec) {
                        if (!wait_ec && !self->stopped) self->accept();
                    });
                    return;
                }
                std::erase_if(self->streams, [](const auto& w) { return w.expired(); });
                if (self->streams.size() >= max_connections) {
                    // Told, not dropped: the client may come back (the write has a deadline).
                    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
                    auto reply = std::make_shared<Reply>(http::status::service_unavailable, 11);
                    reply->set(http::field::retry_after, "1");
                    reply->set(http::field::cache_control, "no-store");
                    self->write(stream, reply);
                } else {
                    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
                    self->streams.push_back(stream);
                    self->serve(std::move(stream));
                }
                self->accept();
            }));
    }

    void serve(std::shared_ptr<beast::tcp_stream> stream) {
        auto buffer = std::make_shared<beast::flat_buffer>();
        auto parser = std::make_shared<http::request_parser<http::string_body>>();
        parser->header_limit(8 * 1024);
        parser->body_limit(0);  // a link is a GET
        stream->expires_after(std::chrono::seconds(10));
        http::async_read(*stream, *buffer, *parser,
                         asio::bind_executor(strand, [self = shared_from_this(), stream, buffer,
                                                      parser](error_code ec, std::size_t) {
                             if (ec || self->stopped) return;
                             self->answer_request(stream, parser->get());
                         }));
    }

    void answer_request(std::shared_ptr<beast::tcp_stream> stream,
                        const http::request<http::string_body>& request) {
        const unsigned version = request.version();
        const bool head = request.method() == http::verb::head;
        auto plain = [&](http::status status, std::string text) {
            auto reply = std::make_shared<Reply>(status, version);
            reply->set(http::field::content_type, "text/plain; charset=utf-8");
            reply->set(http::field::cache_control, "no-store");
            if (status == http::status::method_not_allowed)
                reply->set(http::field::allow, "GET, HEAD");
            if (!head) reply->body() = std::move(text) + "\n";
            write(stream, reply);
        };
        const std::string_view target(request.target().data(), request.target().size());
        if (!target.starts_with("/p/")) return plain(http::status::not_found, "not a payload link");
        if (request.method() != http::verb::get && !head)
            return plain(http::status::method_not_allowed, "a payload link takes GET or HEAD");
        PayloadLinks::Target object;
        const auto status = config.links->check(target, std::chrono::system_clock::now(), object);
        switch (status) {
            case PayloadLinkStatus::valid:
                break;
            case PayloadLinkStatus::expired:
                return plain(http::status::gone, "the link expired");
            case PayloadLinkStatus::malformed:
                return plain(http::status::not_found, "not a payload link");
            case PayloadLinkStatus::unknown_key:
            case PayloadLinkStatus::bad_signature:
                config.logger.log(LogLevel::warning, std::string("links: refused a link ") +
                                                         (status == PayloadLinkStatus::unknown_key
                                                              ? "signed with an unknown key id"
                                                              : "whose signature does not match"));
                return plain(http::status::forbidden, "the link is not valid");
        }
        if (!config.buckets.empty() && std::find(config.buckets.begin(), config.buckets.end(),
                                                 object.bucket) == config.buckets.end()) {
            config.logger.log(
                LogLevel::warning,
                "links: refused a valid link to a bucket not allowed: " + object.bucket);
            return plain(http::status::forbidden, "the link is not valid");
        }
        try {
            config.credentials->async_get_credentials(
                asio::bind_executor(strand, [self = shared_from_this(), stream, version, head,
                                             object](error_code ec, Credentials credentials) {
                    if (self->stopped) return;
                    self->redirect(stream, version, head, object, ec, credentials);
                }));
        } catch (...) {
            // An application's provider that throws: answered as without keys, not left
            // hanging (and the exception kept out of the event loop).
            config.logger.log(LogLevel::error,
                              "links: the credentials provider threw: " + detail::thrown_text());
            redirect(stream, version, head, object, Errc::credentials_not_found, Credentials{});
        }
    }

    void redirect(std::shared_ptr<beast::tcp_stream> stream, unsigned version, bool head,
                  const PayloadLinks::Target& object, error_code ec,
                  const Credentials& credentials) {
        std::string url, why;
        // Signed for the method the client will follow the redirect with.
        if (!ec)
            ec = presign_s3_url(S3PresignRequest{.bucket = object.bucket,
                                                 .key = object.key,
                                                 .region = config.region,
                                                 .endpoint = config.endpoint,
                                                 .addressing = config.addressing,
                                                 .method = head ? "HEAD" : "GET",
                                                 .expires = config.url_expires},
                                credentials, std::chrono::system_clock::now(), url, &why);
        if (ec) {
            config.logger.log(LogLevel::error, "links: no URL for a valid link: " +
                                                   (why.empty() ? ec.message() : why));
            auto reply = std::make_shared<Reply>(http::status::service_unavailable, version);
            reply->set(http::field::content_type, "text/plain; charset=utf-8");
            reply->set(http::field::retry_after, "5");
            reply->set(http::field::cache_control, "no-store");
            if (!head) reply->body() = "the payload cannot be reached just now\n";
            return write(stream, reply);
        }
        auto reply = std::make_shared<Reply>(http::status::found, version);
        reply->set(http::field::location, url);
        reply->set(http::field::cache_control, "no-store");  // the URL expires soon
        write(stream, reply);
    }

    void write(std::shared_ptr<beast::tcp_stream> stream, std::shared_ptr<Reply> reply) {
        reply->keep_alive(false);
        reply->prepare_payload();
        stream->expires_after(std::chrono::seconds(10));
        http::async_write(*stream, *reply, [stream, reply](error_code, std::size_t) {
            error_code ignored;
            stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
        });
    }
};

PayloadLinkService::PayloadLinkService(asio::any_io_executor executor,
                                       PayloadLinkServiceConfig config) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("PayloadLinkService: " + what);
    };
    require(config.links != nullptr, "no links (PayloadLinkServiceConfig::links)");
    require(config.credentials != nullptr, "no credentials provider");
    require(!config.region.empty(), "no region");
    require(config.url_expires >= std::chrono::seconds(1) &&
                config.url_expires <= std::chrono::hours(24 * 7),
            "url_expires must be 1 second to 7 days");
    state_ = std::make_shared<State>(std::move(executor), std::move(config));
}

PayloadLinkService::~PayloadLinkService() {
    stop();
}

void PayloadLinkService::listen(const tcp::endpoint& where) {
    state_->acceptor.open(where.protocol());
    state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    state_->acceptor.bind(where);
    state_->acceptor.listen();
    state_->port = state_->acceptor.local_endpoint().port();
    asio::dispatch(state_->strand, [state = state_] { state->accept(); });
}

std::uint16_t PayloadLinkService::port() const {
    return state_->port;
}

void PayloadLinkService::stop() {
    asio::dispatch(state_->strand, [state = state_] {
        if (state->stopped) return;
        state->stopped = true;
        error_code ignored;
        state->acceptor.close(ignored);
        state->pause.cancel();
        for (auto& weak : state->streams)
            if (auto stream = weak.lock()) stream->socket().close(ignored);
    });
}

}  // namespace outbox
