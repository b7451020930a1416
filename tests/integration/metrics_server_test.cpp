// `outbox relay --metrics`'s HTTP endpoint against real sockets on 127.0.0.1: the page, the
// one path it serves, its bound on connections, and stop() closing those it holds.
#include "catch.hpp"

#include "metrics_server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The server on its own thread, as in the relay.
struct Served {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::unique_ptr<outbox::cli::MetricsServer> server;
    std::thread thread;
    Served() {
        server = std::make_unique<outbox::cli::MetricsServer>(
            io, "127.0.0.1:0",
            [](std::function<void(std::string)> done) { done("outbox_test_total 7\n"); });
        thread = std::thread([this] { io.run(); });
    }
    ~Served() {
        asio::post(io, [this] { server->stop(); });
        work.reset();
        thread.join();
    }
    std::uint16_t port() const { return server->port(); }
};

tcp::socket connect_to(asio::io_context& client, std::uint16_t port) {
    tcp::socket s(client);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    return s;
}

// Everything the server sends until it closes (or the connection breaks).
std::string read_all(tcp::socket& s) {
    std::string out;
    boost::system::error_code ec;
    asio::read(s, asio::dynamic_buffer(out), ec);
    return out;
}

// The answer to `request`; empty when the server closed the connection unanswered (then the
// write itself may fail, which is not an error here).
std::string ask(asio::io_context& client, std::uint16_t port, const std::string& request) {
    tcp::socket s = connect_to(client, port);
    boost::system::error_code ec;
    asio::write(s, asio::buffer(request), ec);
    return read_all(s);
}

}  // namespace

TEST_CASE("metrics endpoint: GET /metrics answers the page; other paths 404") {
    Served served;
    asio::io_context client;
    const std::string page = ask(client, served.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(page.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(page.find("Content-Type: text/plain; version=0.0.4\r\n") != std::string::npos);
    CHECK(page.find("\r\n\r\noutbox_test_total 7\n") != std::string::npos);
    const std::string other = ask(client, served.port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(other.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
}

TEST_CASE(
    "metrics endpoint: at most 16 connections; one more is closed unanswered; stop "
    "closes those held") {
    Served served;
    asio::io_context client;
    // 16 connections that say nothing hold every place.
    std::vector<tcp::socket> held;
    for (int i = 0; i < 16; ++i) held.push_back(connect_to(client, served.port()));
    // The 17th is accepted after them (one acceptor, in order) and closed at once.
    tcp::socket extra = connect_to(client, served.port());
    boost::system::error_code ec;
    asio::write(extra, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")), ec);
    CHECK(read_all(extra).empty());
    // One place given back: the next scrape is served.
    held.front().close();
    std::string page;
    for (int attempt = 0; attempt < 50 && page.empty(); ++attempt)  // until its close is seen
        page = ask(client, served.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(page.find("outbox_test_total 7\n") != std::string::npos);
    // stop() closes the connections it still holds: each reads the end, well before the 10 s
    // after which the server would drop an idle connection anyway.
    const auto stopping = std::chrono::steady_clock::now();
    asio::post(served.io, [&] { served.server->stop(); });
    for (std::size_t i = 1; i < held.size(); ++i) CHECK(read_all(held[i]).empty());
    CHECK(std::chrono::steady_clock::now() - stopping < std::chrono::seconds(5));
}
