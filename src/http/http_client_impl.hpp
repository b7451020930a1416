// HttpClient::Impl and its pool's types, shared by http_client.cpp (the pool and requests)
// and http_connect.cpp (resolving, connecting, the TLS handshake). Private to the library.
#pragma once

#include <outbox/http_client.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outbox {
namespace detail::http_client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
// A strand, type-erased (detail::make_strand_executor says why not asio::strand<...>).
using Strand = asio::any_io_executor;

inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct OriginPool;

struct Connection {
    Connection(Strand& strand, const HttpOrigin& o, OriginPool& p)
        : origin(o), pool(&p), idle_timer(strand) {
        // Beast reads max(512, free room) at a time and its parser consumes each read at once,
        // so the room never grows by itself: a 1.4 KiB SendMessageBatch reply took three
        // reads. With this room a typical reply is one.
        buffer.reserve(reply_read_room);
    }
    static constexpr std::size_t reply_read_room = 8 * 1024;

    // Bare sockets: the client's sweeper enforces every deadline after the connect, so
    // beast's tcp_stream (a timer and a rate policy around each read and write) would add
    // only its cost.
    std::optional<tcp::socket> plain;
    std::optional<ssl::stream<tcp::socket>> secure;
    beast::flat_buffer buffer;
    std::string request_head;  // the request line and fields being sent; its room is reused
    HttpOrigin origin;
    OriginPool* pool;
    asio::steady_timer idle_timer;
    bool reused = false;
    // Deadline of the request in progress, enforced by the client's sweeper.
    Clock::time_point deadline = Clock::time_point::max();
    bool timed_out = false;
    bool watched = false;  // in the client's busy list

    tcp::socket& socket() { return secure ? secure->next_layer() : *plain; }

    void close();
    bool peer_gone();
};
using ConnectionPtr = std::shared_ptr<Connection>;

struct Waiter {
    explicit Waiter(Strand& strand) : timer(strand) {}
    asio::steady_timer timer;
    bool woken = false;
};

struct OriginPool {
    std::vector<ConnectionPtr> idle;  // most recently used last
    std::size_t open = 0;             // idle + in use + being opened
    std::deque<std::shared_ptr<Waiter>> waiters;
};

struct OriginHash {
    std::size_t operator()(const HttpOrigin& o) const noexcept {
        return std::hash<std::string>{}(o.host) ^ (std::size_t{o.port} << 1) ^ std::size_t{o.tls};
    }
};

struct DnsEntry {
    tcp::resolver::results_type results;
    Clock::time_point expires;
};

// "host:port" for error messages, with brackets around an IPv6 address.
inline std::string where(const HttpOrigin& o) {
    const bool ipv6 = o.host.find(':') != std::string::npos;
    return (ipv6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port);
}

// Whether the request was cancelled. A cancellation that comes while no operation is pending
// (between two of them) reaches none: the coroutine must look for it before the next one.
inline bool cancelled_meanwhile(const asio::cancellation_state& state) {
    return state.cancelled() != asio::cancellation_type::none;
}

}  // namespace detail::http_client

// As the anonymous namespace was: the code names these unqualified.
using namespace detail::http_client;

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
    Impl(asio::any_io_executor ex, HttpClientConfig cfg);

    asio::any_io_executor executor;
    Strand strand;
    HttpClientConfig config;
    std::string ca_file;                // TlsOptions::ca_file, else AWS_CA_BUNDLE
    std::string ca_file_source;         // for messages
    std::shared_ptr<ssl::context> tls;  // on the strand after construction
    std::unordered_map<HttpOrigin, OriginPool, OriginHash> pools;  // nodes never move or go
    std::unordered_map<std::string, DnsEntry> dns;
    bool closed = false;
    // Connections with a request in progress. One coarse timer checks their deadlines instead
    // of a timer per read and write: re-arming a kernel timer twice per request costs more
    // than the rest of the request's bookkeeping.
    std::vector<ConnectionPtr> busy;
    asio::steady_timer sweeper{strand};
    bool sweeping = false;
    static constexpr auto sweep_interval = std::chrono::milliseconds(25);
    std::atomic<std::uint64_t> opened{0}, reused{0}, stale{0};
    std::atomic<std::size_t> idle_count{0};

    // In http_client.cpp: the pool.

    void log(LogLevel level, const std::string& message) const;
    void wake_one(OriginPool& pool);
    void watch(const ConnectionPtr& c, Clock::time_point deadline);
    void unwatch(const ConnectionPtr& c);
    void arm_sweeper();
    void discard(OriginPool& pool, const ConnectionPtr& c);
    void release(const ConnectionPtr& c);
    void drop_idle(const ConnectionPtr& c);
    void close_idle();
    void close_all();

    // In http_connect.cpp: resolving and connecting.

    asio::awaitable<error_code> resolve(const HttpOrigin& o, Clock::time_point deadline,
                                        tcp::resolver::results_type& out, std::string& failure);
    asio::awaitable<error_code> connect(const HttpOrigin& o, OriginPool& pool,
                                        Clock::time_point deadline, ConnectionPtr& out,
                                        std::string& failure);

    // In http_client.cpp: requests.

    asio::awaitable<error_code> acquire(const HttpOrigin& o, Clock::time_point deadline,
                                        ConnectionPtr& out, std::string& failure);
    static error_code not_sent_error(error_code ec);
    static error_code after_sent_error(error_code ec);
    asio::awaitable<std::pair<error_code, HttpResponse>> run(HttpRequest request);

    // Takes a connection off the busy list when it goes out of scope, also when an exception
    // leaves the coroutine: a connection left there would keep the sweeper going for ever.
    struct UnwatchOnExit {
        Impl& impl;
        const ConnectionPtr& c;
        ~UnwatchOnExit() { impl.unwatch(c); }
    };
};

}  // namespace outbox
