// `outbox relay --metrics HOST:PORT`: a small HTTP/1.1 endpoint that answers GET /metrics with
// Prometheus' text format, one request per connection, for a scraper.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace outbox::cli {

/// "HOST:PORT" (an IPv6 address in brackets) as an endpoint; `option` names the flag in
/// errors. Throws std::invalid_argument for anything else (a host name would be resolved anew
/// at each start).
boost::asio::ip::tcp::endpoint parse_listen_address(std::string_view address,
                                                    std::string_view option);

class MetricsServer {
  public:
    /// Renders the page and hands it to its argument (asynchronously: it may ask a store).
    using Render = std::function<void(std::function<void(std::string)>)>;

    /// Listens on `address` ("127.0.0.1:9464"; an IPv6 address in brackets). Throws
    /// std::invalid_argument for an address that does not parse, boost::system::system_error
    /// when it cannot listen there.
    MetricsServer(boost::asio::io_context& io, std::string_view address, Render render);
    ~MetricsServer();
    /// Stops accepting and closes the connections being served.
    void stop();
    std::uint16_t port() const;

  private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace outbox::cli
