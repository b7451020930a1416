#include <outbox/http_client.hpp>

#include "http/http_client_impl.hpp"
#include "http/http_response_reader.hpp"

#include "core/swar.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <deque>
#include <stdexcept>
#include <unordered_map>

namespace outbox {
namespace {

namespace http = beast::http;
using Handler = asio::any_completion_handler<void(error_code, HttpResponse)>;

// For log messages.
std::string pool_key(const HttpOrigin& o) {
    return (o.tls ? "https://" : "http://") + o.host + ":" + std::to_string(o.port);
}

std::string milliseconds_text(std::chrono::milliseconds ms) {
    return ms.count() % 1000 == 0 ? std::to_string(ms.count() / 1000) + " s"
                                  : std::to_string(ms.count()) + " ms";
}

// The request line and header fields of `request`, into `head` (kept by the connection, so
// its room is reused): Host and User-Agent first, then the caller's fields, then
// Content-Length when there is a body or the method expects one (the rule of Beast's
// prepare_payload). A caller's own Content-Length and Transfer-Encoding are left out: the
// body is sent whole, and two lengths that disagree are how requests get smuggled.
void write_head(const HttpRequest& request, std::string_view host, std::string_view user_agent,
                std::string& head) {
    head.clear();
    auto line = [&](std::string_view name, std::string_view value) {
        head.append(name).append(": ").append(value).append("\r\n");
    };
    head.append(request.method).append(" ").append(request.target).append(" HTTP/1.1\r\n");
    line("Host", host);
    line("User-Agent", user_agent);
    for (const auto& [name, value] : request.headers)
        if (!beast::iequals(name, "Content-Length") && !beast::iequals(name, "Transfer-Encoding"))
            line(name, value);
    // Methods are case-sensitive (RFC 9110, 9.1).
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
        request.method == "OPTIONS") {
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, request.body.size()).ptr;
        line("Content-Length", std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }
    head.append("\r\n");
}

// Where a request's method, target or header fields would break the request apart (a CR, LF
// or NUL would end a line early and start another): what is wrong, or empty.
std::string unsafe_request_part(const HttpRequest& request, std::string_view host,
                                std::string_view user_agent) {
    // Eight bytes at a time: find_first_of calls memchr on its set for every byte.
    auto bad = [](std::string_view text) {
        namespace swar = detail::swar;
        std::size_t i = 0;
        for (; i + 8 <= text.size(); i += 8) {
            const auto w = swar::load(text.data() + i);
            if (swar::has_zero(w) | swar::has_byte(w, '\r') | swar::has_byte(w, '\n')) return true;
        }
        for (; i < text.size(); ++i)
            if (text[i] == '\r' || text[i] == '\n' || text[i] == '\0') return true;
        return false;
    };
    if (request.method.empty() || bad(request.method) ||
        request.method.find(' ') != std::string::npos)
        return "the method \"" + request.method + "\" is not a token";
    if (request.target.empty() || bad(request.target) ||
        request.target.find(' ') != std::string::npos)
        return "the request target has a space, CR, LF or NUL, or is empty";
    if (bad(host)) return "the host has a CR, LF or NUL";
    if (bad(user_agent)) return "the configured User-Agent has a CR, LF or NUL";
    for (const auto& [name, value] : request.headers) {
        if (name.empty() || bad(name) || name.find(':') != std::string::npos)
            return "the header name \"" + name + "\" is not a token";
        if (bad(value)) return "the value of header " + name + " has a CR, LF or NUL";
    }
    return {};
}

}  // namespace

void HttpClient::Impl::log(LogLevel level, const std::string& message) const {
    config.logger.log(level, message);
}

void HttpClient::Impl::wake_one(OriginPool& pool) {
    while (!pool.waiters.empty()) {
        auto w = pool.waiters.front();
        pool.waiters.pop_front();
        if (w->woken) continue;
        w->woken = true;
        w->timer.cancel();
        return;
    }
}

void HttpClient::Impl::watch(const ConnectionPtr& c, Clock::time_point deadline) {
    c->deadline = deadline;
    c->timed_out = false;
    c->watched = true;
    busy.push_back(c);
    if (!sweeping) arm_sweeper();
}

void HttpClient::Impl::unwatch(const ConnectionPtr& c) {
    if (!c->watched) return;
    c->watched = false;
    c->deadline = Clock::time_point::max();
    if (auto it = std::find(busy.begin(), busy.end(), c); it != busy.end()) {
        *it = std::move(busy.back());
        busy.pop_back();
    }
    if (closed && busy.empty()) sweeper.cancel();  // the loop need not wait for its next tick
}

void HttpClient::Impl::arm_sweeper() {
    sweeping = true;
    sweeper.expires_after(sweep_interval);
    // Cancelled or not, it goes on while a request is in flight: a request still connecting
    // when close() cancelled it joins `busy` afterwards, and has no other deadline.
    sweeper.async_wait([self = shared_from_this()](error_code) {
        if (self->busy.empty()) {
            self->sweeping = false;
            return;
        }
        const auto now = Clock::now();
        for (const ConnectionPtr& c : self->busy) {
            if (c->deadline <= now && !c->timed_out) {
                c->timed_out = true;  // the pending read or write fails; the request sees why
                error_code ignored;
                c->socket().close(ignored);
            }
        }
        self->arm_sweeper();
    });
}

void HttpClient::Impl::discard(OriginPool& pool, const ConnectionPtr& c) {
    c->close();
    --pool.open;
    wake_one(pool);
}

void HttpClient::Impl::release(const ConnectionPtr& c) {
    OriginPool& pool = *c->pool;
    if (closed || c->buffer.size() != 0 || config.idle_timeout.count() <= 0) {
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

void HttpClient::Impl::drop_idle(const ConnectionPtr& c) {
    OriginPool& pool = *c->pool;
    const auto it = std::find(pool.idle.begin(), pool.idle.end(), c);
    if (it == pool.idle.end()) return;
    pool.idle.erase(it);
    --idle_count;
    discard(pool, c);
}

void HttpClient::Impl::close_idle() {
    for (auto& [key, pool] : pools) {
        for (auto& c : pool.idle) {
            c->close();
            --pool.open;
            --idle_count;
        }
        pool.idle.clear();
    }
}

void HttpClient::Impl::close_all() {
    closed = true;
    // Requests in flight keep their deadlines: the sweeper stops once they are done.
    if (busy.empty()) sweeper.cancel();
    close_idle();
    for (auto& [key, pool] : pools)
        while (!pool.waiters.empty()) wake_one(pool);
}

// A connection for `o`: an idle pooled one that is still open, a new one while under the
// limit, or the next one released, whichever comes first before the deadline.
asio::awaitable<error_code> HttpClient::Impl::acquire(const HttpOrigin& o,
                                                      Clock::time_point deadline,
                                                      ConnectionPtr& out, std::string& failure) {
    OriginPool& pool = pools[o];
    for (;;) {
        if (closed) {
            failure = "the HTTP client is closed";
            co_return make_error_code(asio::error::operation_aborted);
        }
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
            const error_code ec = co_await connect(o, pool, deadline, out, failure);
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
        // Woken by a released connection and cancelled in the same turn: still cancelled.
        const auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none) {
            if (waiter->woken) wake_one(pool);  // the turn it was given goes to the next
            waiter->woken = true;               // leaves the queue lazily
            failure = "cancelled while waiting for a connection to " + where(o);
            co_return make_error_code(asio::error::operation_aborted);
        }
        if (!waiter->woken) {
            waiter->woken = true;  // leaves the queue lazily
            failure = "no connection to " + where(o) + " became free before the deadline";
            co_return make_error_code(Errc::timeout);
        }
    }
}

error_code HttpClient::Impl::not_sent_error(error_code ec) {
    if (ec == beast::error::timeout) return Errc::timeout;
    return ec;
}

error_code HttpClient::Impl::after_sent_error(error_code ec) {
    if (ec == http::error::body_limit || ec == http::error::header_limit ||
        ec == http::error::buffer_overflow)
        return Errc::response_too_large;
    if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
        return Errc::malformed_response;
    return Errc::outcome_unknown;
}

// GCC 12 takes the frame's recycling allocator (aligned_alloc inside, its own operator delete
// outside) for a mismatched pair once enough of it is inlined: a false -Wmismatched-new-delete.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<std::pair<error_code, HttpResponse>> HttpClient::Impl::run(HttpRequest request) {
    auto self = shared_from_this();
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
    const auto timeout = request.timeout.value_or(config.request_timeout);
    const auto deadline = Clock::now() + timeout;
    auto failed = [](error_code ec, std::string failure) {
        HttpResponse res;
        res.failure = std::move(failure);
        return std::pair{ec, std::move(res)};
    };

    const std::string host = request.origin.host_header();
    if (std::string why = unsafe_request_part(request, host, config.user_agent); !why.empty())
        co_return failed(Errc::invalid_argument,
                         "refusing to send the request to " + where(request.origin) + ": " + why);
    const bool head_request = request.method == "HEAD";

    for (int attempt = 0;; ++attempt) {
        ConnectionPtr c;
        std::string failure;
        if (error_code ec = co_await acquire(request.origin, deadline, c, failure))
            co_return failed(ec, std::move(failure));
        OriginPool& pool = *c->pool;
        // A cancellation that came while no operation was pending (between the connect and
        // the write, say) reached no operation: it is seen here or never.
        if (cancelled_meanwhile(co_await asio::this_coro::cancellation_state)) {
            release(c);
            co_return failed(
                asio::error::operation_aborted,
                "cancelled before the request to " + where(request.origin) + " was sent");
        }

        watch(c, deadline);
        const UnwatchOnExit unwatch_on_exit{*this, c};
        write_head(request, host, config.user_agent, c->request_head);
        const std::array<asio::const_buffer, 2> wire = {asio::buffer(c->request_head),
                                                        asio::buffer(request.body)};
        const std::size_t wire_size = c->request_head.size() + request.body.size();
        auto [wec, written] = c->secure ? co_await asio::async_write(*c->secure, wire, use_tuple)
                                        : co_await asio::async_write(*c->plain, wire, use_tuple);
        if (wec) {
            unwatch(c);
            if (c->timed_out) wec = beast::error::timeout;
            const bool was_reused = c->reused;
            discard(pool, c);
            const auto cs = co_await asio::this_coro::cancellation_state;
            const bool cancelled = cs.cancelled() != asio::cancellation_type::none;
            // A reused connection that fails on write was closed under us; the server has
            // not seen the request, so one more try on a fresh connection is safe.
            // The whole request handed to the kernel: the server may have read it before
            // the cancellation or the failure reached the write's completion.
            const bool handed_over = written == wire_size;
            if (was_reused && attempt == 0 && !cancelled && !handed_over &&
                wec != beast::error::timeout) {
                log(LogLevel::debug, "retrying on a fresh connection after: " + wec.message());
                continue;
            }
            if (handed_over)
                co_return failed(Errc::outcome_unknown,
                                 (cancelled ? "cancelled while the request to "
                                            : "the connection failed while the request to ") +
                                     where(request.origin) + " was being sent" +
                                     (cancelled ? "" : ": " + wec.message()));
            if (cancelled)
                co_return failed(
                    asio::error::operation_aborted,
                    "cancelled before the request to " + where(request.origin) + " was sent");
            co_return failed(not_sent_error(wec),
                             wec == beast::error::timeout
                                 ? "sending the request to " + where(request.origin) +
                                       " did not finish within " + milliseconds_text(timeout)
                                 : "sending the request to " + where(request.origin) +
                                       " failed: " + wec.message());
        }

        if (cancelled_meanwhile(co_await asio::this_coro::cancellation_state)) {
            unwatch(c);
            discard(pool, c);
            co_return failed(Errc::outcome_unknown, "cancelled after the request to " +
                                                        where(request.origin) + " was sent");
        }

        HttpResponse out;
        detail::HttpResponseReader parser(out);
        parser.header_limit(static_cast<std::uint32_t>(config.max_response_header_bytes));
        parser.body_limit(config.max_response_body_bytes);
        if (head_request) parser.skip(true);
        auto [rec, read] = c->secure
                               ? co_await http::async_read(*c->secure, c->buffer, parser, use_tuple)
                               : co_await http::async_read(*c->plain, c->buffer, parser, use_tuple);
        unwatch(c);
        if (rec) {
            if (c->timed_out) rec = beast::error::timeout;
            discard(pool, c);
            log(LogLevel::debug,
                "no complete response from " + pool_key(request.origin) + ": " + rec.message());
            const auto cs = co_await asio::this_coro::cancellation_state;
            std::string why =
                cs.cancelled() != asio::cancellation_type::none
                    ? "cancelled after the request to " + where(request.origin) + " was sent"
                : rec == beast::error::timeout
                    ? "no complete reply from " + where(request.origin) + " within " +
                          milliseconds_text(timeout) + " (the request was sent)"
                    : "the reply from " + where(request.origin) +
                          " was cut short: " + rec.message();
            co_return failed(after_sent_error(rec), std::move(why));
        }
        if (parser.keep_alive() && !parser.need_eof() && !c->timed_out)
            release(c);
        else
            discard(pool, c);
        co_return std::pair{error_code{}, std::move(out)};
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

HttpClient::HttpClient(asio::any_io_executor executor, HttpClientConfig config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

HttpClient::~HttpClient() {
    asio::post(impl_->strand, [impl = impl_] { impl->close_all(); });
}

void HttpClient::close() {
    asio::dispatch(impl_->strand, [impl = impl_] { impl->close_all(); });
}

void HttpClient::close_idle() {
    asio::dispatch(impl_->strand, [impl = impl_] { impl->close_idle(); });
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
        // Weak: the caller's slot may outlive the client and its event loop (a strand's
        // destructor needs the loop's service).
        slot.assign([op, weak = std::weak_ptr<Impl>(impl_)](asio::cancellation_type type) {
            if (auto impl = weak.lock())
                asio::dispatch(impl->strand, [op, type] { op->signal.emit(type); });
        });
    }
    auto ex = asio::get_associated_executor(handler, impl_->executor);
    // The caller's slot keeps its handler when this completes: clearing it here, on the
    // client's strand, could race an emit on the caller's. A late emit reaches a finished
    // coroutine's signal, which has no handler left: nothing happens.
    asio::co_spawn(impl_->strand, impl_->run(std::move(request)),
                   asio::bind_cancellation_slot(
                       op->signal.slot(), [op, ex, handler = std::move(handler)](
                                              std::exception_ptr e,
                                              std::pair<error_code, HttpResponse> result) mutable {
                           if (e) result.first = make_error_code(asio::error::fault);
                           asio::dispatch(ex, [handler = std::move(handler),
                                               result = std::move(result)]() mutable {
                               std::move(handler)(result.first, std::move(result.second));
                           });
                       }));
}

}  // namespace outbox
