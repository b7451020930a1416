#include <outbox/http_client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <stdexcept>
#include <unordered_map>

namespace outbox {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using Handler = asio::any_completion_handler<void(error_code, HttpResponse)>;
using Strand = asio::strand<asio::any_io_executor>;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) {
            return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

bool is_ip_literal(const std::string& host) {
    error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

struct OriginPool;

struct Connection {
    Connection(Strand& strand, const HttpOrigin& o, OriginPool& p)
        : origin(o), pool(&p), idle_timer(strand) {}

    std::optional<beast::tcp_stream> plain;
    std::optional<ssl::stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    HttpOrigin origin;
    OriginPool* pool;
    asio::steady_timer idle_timer;
    bool reused = false;
    // Deadline of the request in progress, enforced by the client's sweeper.
    Clock::time_point deadline = Clock::time_point::max();
    bool timed_out = false;

    beast::tcp_stream& tcp() { return secure ? secure->next_layer() : *plain; }

    void close() {
        error_code ec;
        tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
        tcp().close();
        idle_timer.cancel();
    }

    // True when a pooled connection cannot be used: the server closed it (EOF), reset it,
    // or sent something nobody asked for (a TLS close_notify, say).
    bool peer_gone() {
        if (buffer.size() != 0) return true;
        char byte;
        const auto n = ::recv(tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n >= 0) return true;
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
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

// For log messages.
std::string pool_key(const HttpOrigin& o) {
    return (o.tls ? "https://" : "http://") + o.host + ":" + std::to_string(o.port);
}

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
    Impl(asio::any_io_executor ex, HttpClientConfig cfg)
        : executor(ex),
          strand(asio::make_strand(ex)),
          config(std::move(cfg)),
          tls(ssl::context::tls_client) {
        tls.set_default_verify_paths();
        if (!config.tls.ca_file.empty()) {
            error_code ec;
            tls.load_verify_file(config.tls.ca_file, ec);
            if (ec)
                throw std::invalid_argument("outbox::HttpClient: cannot load CA file " +
                                            config.tls.ca_file + ": " + ec.message());
        }
        if (config.tls.verify_peer) {
            tls.set_verify_mode(ssl::verify_peer);
        } else {
            tls.set_verify_mode(ssl::verify_none);
            config.logger.log(
                LogLevel::warning,
                "TLS certificate verification is turned off: connections can be intercepted");
        }
    }

    asio::any_io_executor executor;
    Strand strand;
    HttpClientConfig config;
    ssl::context tls;
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

    void log(LogLevel level, const std::string& message) const {
        config.logger.log(level, message);
    }

    void wake_one(OriginPool& pool) {
        while (!pool.waiters.empty()) {
            auto w = pool.waiters.front();
            pool.waiters.pop_front();
            if (w->woken) continue;
            w->woken = true;
            w->timer.cancel();
            return;
        }
    }

    void watch(const ConnectionPtr& c, Clock::time_point deadline) {
        c->deadline = deadline;
        c->timed_out = false;
        busy.push_back(c);
        if (!sweeping) arm_sweeper();
    }

    void unwatch(const ConnectionPtr& c) {
        c->deadline = Clock::time_point::max();
        if (auto it = std::find(busy.begin(), busy.end(), c); it != busy.end()) {
            *it = std::move(busy.back());
            busy.pop_back();
        }
    }

    void arm_sweeper() {
        sweeping = true;
        sweeper.expires_after(sweep_interval);
        sweeper.async_wait([self = shared_from_this()](error_code ec) {
            if (ec || self->busy.empty()) {
                self->sweeping = false;
                return;
            }
            const auto now = Clock::now();
            for (const ConnectionPtr& c : self->busy) {
                if (c->deadline <= now && !c->timed_out) {
                    c->timed_out = true;  // the pending read or write fails; the request sees why
                    error_code ignored;
                    c->tcp().socket().close(ignored);
                }
            }
            self->arm_sweeper();
        });
    }

    void discard(OriginPool& pool, const ConnectionPtr& c) {
        c->close();
        --pool.open;
        wake_one(pool);
    }

    void release(const ConnectionPtr& c) {
        OriginPool& pool = *c->pool;
        if (closed || c->buffer.size() != 0) {
            discard(pool, c);
            return;
        }
        pool.idle.push_back(c);
        ++idle_count;
        // Closed before the server's own idle timeout, so a request never meets a
        // connection the server is about to drop.
        c->idle_timer.expires_after(config.idle_timeout);
        c->idle_timer.async_wait([self = shared_from_this(), c](error_code ec) {
            if (ec) return;  // taken for a request, or the client closed
            self->drop_idle(c);
        });
        wake_one(pool);
    }

    void drop_idle(const ConnectionPtr& c) {
        OriginPool& pool = *c->pool;
        const auto it = std::find(pool.idle.begin(), pool.idle.end(), c);
        if (it == pool.idle.end()) return;
        pool.idle.erase(it);
        --idle_count;
        discard(pool, c);
    }

    void close_all() {
        closed = true;
        sweeper.cancel();
        for (auto& [key, pool] : pools) {
            for (auto& c : pool.idle) {
                c->close();
                --pool.open;
                --idle_count;
            }
            pool.idle.clear();
            while (!pool.waiters.empty()) wake_one(pool);
        }
    }

    asio::awaitable<error_code> resolve(const HttpOrigin& o, Clock::time_point deadline,
                                        tcp::resolver::results_type& out) {
        if (is_ip_literal(o.host)) {
            out = tcp::resolver::results_type::create(
                tcp::endpoint(asio::ip::make_address(o.host), o.port), o.host,
                std::to_string(o.port));
            co_return error_code{};
        }
        const std::string key = o.host + ":" + std::to_string(o.port);
        if (auto it = dns.find(key); it != dns.end() && it->second.expires > Clock::now()) {
            out = it->second.results;
            co_return error_code{};
        }
        auto resolver = std::make_shared<tcp::resolver>(strand);
        asio::steady_timer timer(strand, deadline);
        // The handler may already be queued when resolution completes: it must not reach a
        // resolver that is gone, so it holds only a weak reference.
        timer.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](error_code ec) {
            if (auto r = weak.lock(); r && !ec) r->cancel();
        });
        auto [ec, results] =
            co_await resolver->async_resolve(o.host, std::to_string(o.port), use_tuple);
        const bool timed_out = timer.cancel() == 0 && ec == asio::error::operation_aborted;
        if (timed_out) co_return make_error_code(Errc::timeout);
        if (ec) co_return ec;
        dns[key] = {results, Clock::now() + config.dns_cache_ttl};
        out = results;
        co_return error_code{};
    }

    asio::awaitable<error_code> connect(const HttpOrigin& o, OriginPool& pool,
                                        Clock::time_point deadline, ConnectionPtr& out) {
        const auto connect_deadline = std::min(deadline, Clock::now() + config.connect_timeout);
        tcp::resolver::results_type endpoints;
        if (auto ec = co_await resolve(o, connect_deadline, endpoints)) co_return ec;
        auto c = std::make_shared<Connection>(strand, o, pool);
        beast::tcp_stream stream(strand);
        stream.expires_at(connect_deadline);
        auto [ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
        if (ec) co_return ec == beast::error::timeout ? make_error_code(Errc::timeout) : ec;
        stream.socket().set_option(tcp::no_delay(true));
        if (!o.tls) {
            c->plain.emplace(std::move(stream));
        } else {
            c->secure.emplace(std::move(stream), tls);
            auto& s = *c->secure;
            if (!is_ip_literal(o.host)) SSL_set_tlsext_host_name(s.native_handle(), o.host.c_str());
            if (config.tls.verify_peer) s.set_verify_callback(ssl::host_name_verification(o.host));
            s.next_layer().expires_at(
                std::min(deadline, Clock::now() + config.tls_handshake_timeout));
            auto [hec] = co_await s.async_handshake(ssl::stream_base::client, use_tuple);
            if (hec) co_return hec == beast::error::timeout ? make_error_code(Errc::timeout) : hec;
        }
        ++opened;
        out = std::move(c);
        co_return error_code{};
    }

    // A connection for `o`: an idle pooled one that is still open, a new one while under the
    // limit, or the next one released, whichever comes first before the deadline.
    asio::awaitable<error_code> acquire(const HttpOrigin& o, Clock::time_point deadline,
                                        ConnectionPtr& out) {
        OriginPool& pool = pools[o];
        for (;;) {
            if (closed) co_return make_error_code(asio::error::operation_aborted);
            while (!pool.idle.empty()) {
                ConnectionPtr c = std::move(pool.idle.back());
                pool.idle.pop_back();
                --idle_count;
                c->idle_timer.cancel();
                if (c->peer_gone()) {
                    ++stale;
                    log(LogLevel::debug,
                        "dropping a pooled connection the server closed: " + pool_key(o));
                    discard(pool, c);
                    continue;
                }
                c->reused = true;
                ++reused;
                out = std::move(c);
                co_return error_code{};
            }
            if (pool.open < config.max_connections_per_origin) {
                ++pool.open;
                const error_code ec = co_await connect(o, pool, deadline, out);
                if (ec) {
                    --pool.open;
                    wake_one(pool);
                }
                co_return ec;
            }
            auto waiter = std::make_shared<Waiter>(strand);
            waiter->timer.expires_at(deadline);
            pool.waiters.push_back(waiter);
            co_await waiter->timer.async_wait(use_tuple);
            if (!waiter->woken) {
                waiter->woken = true;  // leaves the queue lazily
                const auto cs = co_await asio::this_coro::cancellation_state;
                co_return cs.cancelled() != asio::cancellation_type::none
                    ? make_error_code(asio::error::operation_aborted)
                    : make_error_code(Errc::timeout);
            }
        }
    }

    static error_code not_sent_error(error_code ec) {
        if (ec == beast::error::timeout) return Errc::timeout;
        return ec;
    }

    static error_code after_sent_error(error_code ec) {
        if (ec == http::error::body_limit || ec == http::error::header_limit ||
            ec == http::error::buffer_overflow)
            return Errc::response_too_large;
        if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message)
            return Errc::malformed_response;
        return Errc::outcome_unknown;
    }

    asio::awaitable<std::pair<error_code, HttpResponse>> run(HttpRequest request) {
        auto self = shared_from_this();
        co_await asio::this_coro::throw_if_cancelled(false);
        co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
        const auto deadline = Clock::now() + request.timeout.value_or(config.request_timeout);

        http::request<http::string_body> req;
        const http::verb verb = http::string_to_verb(request.method);
        if (verb == http::verb::unknown)
            req.method_string(request.method);
        else
            req.method(verb);
        req.target(request.target);
        req.version(11);
        req.set(http::field::host, request.origin.host_header());
        req.set(http::field::user_agent, config.user_agent);
        for (auto& [name, value] : request.headers) req.insert(name, value);
        req.body() = std::move(request.body);
        req.prepare_payload();

        for (int attempt = 0;; ++attempt) {
            ConnectionPtr c;
            if (error_code ec = co_await acquire(request.origin, deadline, c))
                co_return std::pair{ec, HttpResponse{}};
            OriginPool& pool = *c->pool;

            c->tcp().expires_never();
            watch(c, deadline);
            auto [wec, written] = c->secure ? co_await http::async_write(*c->secure, req, use_tuple)
                                            : co_await http::async_write(*c->plain, req, use_tuple);
            if (wec) {
                unwatch(c);
                if (c->timed_out) wec = beast::error::timeout;
                const bool was_reused = c->reused;
                discard(pool, c);
                const auto cs = co_await asio::this_coro::cancellation_state;
                const bool cancelled = cs.cancelled() != asio::cancellation_type::none;
                // A reused connection that fails on write was closed under us; the server has
                // not seen the request, so one more try on a fresh connection is safe.
                if (was_reused && attempt == 0 && !cancelled && wec != beast::error::timeout) {
                    log(LogLevel::debug, "retrying on a fresh connection after: " + wec.message());
                    continue;
                }
                co_return std::pair{cancelled ? make_error_code(asio::error::operation_aborted)
                                              : not_sent_error(wec),
                                    HttpResponse{}};
            }

            http::response_parser<http::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(config.max_response_header_bytes));
            parser.body_limit(config.max_response_body_bytes);
            if (verb == http::verb::head) parser.skip(true);
            auto [rec, read] =
                c->secure ? co_await http::async_read(*c->secure, c->buffer, parser, use_tuple)
                          : co_await http::async_read(*c->plain, c->buffer, parser, use_tuple);
            unwatch(c);
            if (rec) {
                if (c->timed_out) rec = beast::error::timeout;
                discard(pool, c);
                log(LogLevel::debug,
                    "no complete response from " + pool_key(request.origin) + ": " + rec.message());
                co_return std::pair{after_sent_error(rec), HttpResponse{}};
            }
            auto res = parser.release();
            HttpResponse out;
            out.status = res.result_int();
            out.headers.reserve(static_cast<std::size_t>(std::distance(res.begin(), res.end())));
            for (const auto& field : res)
                out.headers.emplace_back(field.name_string(), field.value());
            out.body = std::move(res.body());
            if (res.keep_alive() && !parser.need_eof() && !c->timed_out)
                release(c);
            else
                discard(pool, c);
            co_return std::pair{error_code{}, std::move(out)};
        }
    }
};

std::string HttpOrigin::host_header() const {
    const bool ipv6 = host.find(':') != std::string::npos;
    std::string h = ipv6 ? "[" + host + "]" : host;
    if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
    return h;
}

boost::system::error_code parse_http_url(std::string_view url, HttpOrigin& origin,
                                         std::string& target) {
    const auto parsed = boost::urls::parse_uri(url);
    if (!parsed) return Errc::invalid_url;
    const auto scheme = parsed->scheme_id();
    if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https)
        return Errc::invalid_url;
    if (parsed->host_type() == boost::urls::host_type::none || parsed->encoded_host().empty())
        return Errc::invalid_url;
    if (parsed->has_userinfo()) return Errc::invalid_url;
    origin.tls = scheme == boost::urls::scheme::https;
    origin.host = parsed->host_type() == boost::urls::host_type::ipv6 ? parsed->host_address()
                                                                      : parsed->host();
    if (parsed->has_port()) {
        const auto port = parsed->port_number();
        if (port == 0) return Errc::invalid_url;
        origin.port = port;
    } else {
        origin.port = origin.tls ? 443 : 80;
    }
    target = parsed->encoded_path().empty() ? "/" : std::string(parsed->encoded_path());
    if (parsed->has_query()) target += "?" + std::string(parsed->encoded_query());
    return {};
}

std::string_view HttpResponse::header(std::string_view name) const noexcept {
    for (const auto& [n, v] : headers)
        if (iequals(n, name)) return v;
    return {};
}

HttpClient::HttpClient(asio::any_io_executor executor, HttpClientConfig config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

HttpClient::~HttpClient() {
    asio::post(impl_->strand, [impl = impl_] { impl->close_all(); });
}

void HttpClient::close() {
    asio::dispatch(impl_->strand, [impl = impl_] { impl->close_all(); });
}

HttpClient::executor_type HttpClient::get_executor() const noexcept {
    return impl_->executor;
}

HttpClientStats HttpClient::stats() const {
    return {impl_->opened.load(), impl_->reused.load(), impl_->stale.load(),
            impl_->idle_count.load()};
}

void HttpClient::start(HttpRequest request, Handler handler) {
    // Cancellation requests arrive on any thread; the operation lives on the strand.
    struct Op {
        asio::cancellation_signal signal;
    };
    auto op = std::make_shared<Op>();
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        slot.assign([op, strand = impl_->strand](asio::cancellation_type type) {
            asio::dispatch(strand, [op, type] { op->signal.emit(type); });
        });
    }
    auto ex = asio::get_associated_executor(handler, impl_->executor);
    asio::co_spawn(impl_->strand, impl_->run(std::move(request)),
                   asio::bind_cancellation_slot(
                       op->signal.slot(), [op, ex, slot, handler = std::move(handler)](
                                              std::exception_ptr e,
                                              std::pair<error_code, HttpResponse> result) mutable {
                           // Done: the caller's slot no longer refers to this operation.
                           if (slot.is_connected()) slot.clear();
                           if (e) result.first = make_error_code(asio::error::fault);
                           asio::dispatch(ex, [handler = std::move(handler),
                                               result = std::move(result)]() mutable {
                               std::move(handler)(result.first, std::move(result.second));
                           });
                       }));
}

}  // namespace outbox
