// HttpClient's connections: resolving (with the DNS cache), connecting, and TLS (the shared
// contexts, the handshake, its failures in words); apart from the pool and requests.
#include "core/strand_executor.hpp"
#include "http/http_client_impl.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>

namespace outbox {
namespace {

bool is_ip_literal(const std::string& host) {
    error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

// One TLS context per (verification, CA file) in the process: loading the system's CA store
// takes milliseconds, and an SSL_CTX that is no longer changed is safe to share between threads.
std::shared_ptr<ssl::context> shared_tls_context(bool verify_peer, const std::string& ca_file,
                                                 const std::string& ca_file_source) {
    static std::mutex mutex;
    static std::map<std::pair<bool, std::string>, std::weak_ptr<ssl::context>> contexts;
    std::lock_guard lock(mutex);
    auto& slot = contexts[{verify_peer, ca_file}];
    if (auto known = slot.lock()) return known;
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    error_code no_default_store;  // then only ca_file is trusted
    ctx->set_default_verify_paths(no_default_store);
    // AWS_CA_BUNDLE often names the system's own bundle: loaded once, not twice (each load
    // parses every certificate, tens of milliseconds).
    std::error_code not_same;
    const bool is_default_file =
        !no_default_store && !ca_file.empty() &&
        std::filesystem::equivalent(ca_file, X509_get_default_cert_file(), not_same);
    if (!ca_file.empty() && !is_default_file) {
        error_code ec;
        ctx->load_verify_file(ca_file, ec);
        if (ec)
            throw std::invalid_argument("outbox::HttpClient: cannot load CA file " + ca_file +
                                        ca_file_source + ": " + ec.message());
    }
    ctx->set_verify_mode(verify_peer ? ssl::verify_peer : ssl::verify_none);
    slot = ctx;
    return ctx;
}

// Why a handshake failed, in words a person can act on.
std::string tls_failure(SSL* ssl, const error_code& ec) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify == X509_V_OK) return ec.message();
    std::string text = "certificate verify failed: ";
    text += X509_verify_cert_error_string(verify);
    switch (verify) {
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            text +=
                " (the issuer is not trusted: add its CA with TlsOptions::ca_file or "
                "AWS_CA_BUNDLE)";
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            text += " (the certificate is for another host)";
            break;
        default:
            break;
    }
    return text;
}

}  // namespace

void detail::http_client::Connection::close() {
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
    idle_timer.cancel();
}

// True when a pooled connection cannot be used: the server closed it (EOF), reset it,
// or sent something nobody asked for (a TLS close_notify, say).
bool detail::http_client::Connection::peer_gone() {
    if (buffer.size() != 0) return true;
    char byte;
    const auto n = ::recv(socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) return true;
    return errno != EAGAIN && errno != EWOULDBLOCK;
}

HttpClient::Impl::Impl(asio::any_io_executor ex, HttpClientConfig cfg)
    : executor(ex), strand(detail::make_strand_executor(ex)), config(std::move(cfg)) {
    ca_file = config.tls.ca_file;
    if (ca_file.empty()) {
        if (const char* bundle = std::getenv("AWS_CA_BUNDLE"); bundle && *bundle) {
            ca_file = bundle;
            ca_file_source = " (AWS_CA_BUNDLE)";
        }
    }
    // A CA file that cannot be read fails construction; its certificates, like the system
    // store, are loaded at the first TLS connection (plain-HTTP clients never parse them).
    if (!ca_file.empty()) {
        std::ifstream in(ca_file, std::ios::binary);
        char first = 0;
        if (!in || !in.get(first))
            throw std::invalid_argument("outbox::HttpClient: cannot load CA file " + ca_file +
                                        ca_file_source + ": " +
                                        (in ? "it is empty or not a file" : std::strerror(errno)));
    }
    if (!config.tls.verify_peer)
        config.logger.log(
            LogLevel::warning,
            "TLS certificate verification is turned off: connections can be intercepted");
}

asio::awaitable<error_code> HttpClient::Impl::resolve(const HttpOrigin& o,
                                                      Clock::time_point deadline,
                                                      tcp::resolver::results_type& out,
                                                      std::string& failure) {
    if (is_ip_literal(o.host)) {
        out = tcp::resolver::results_type::create(
            tcp::endpoint(asio::ip::make_address(o.host), o.port), o.host, std::to_string(o.port));
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
    if (timed_out) {
        failure = "looking up " + o.host + " timed out";
        co_return make_error_code(Errc::timeout);
    }
    if (ec) {
        failure = "cannot resolve " + o.host + ": " + ec.message();
        co_return ec;
    }
    dns[key] = {results, Clock::now() + config.dns_cache_ttl};
    out = results;
    co_return error_code{};
}

asio::awaitable<error_code> HttpClient::Impl::connect(const HttpOrigin& o, OriginPool& pool,
                                                      Clock::time_point deadline,
                                                      ConnectionPtr& out, std::string& failure) {
    const auto connect_deadline = std::min(deadline, Clock::now() + config.connect_timeout);
    tcp::resolver::results_type endpoints;
    if (auto ec = co_await resolve(o, connect_deadline, endpoints, failure)) co_return ec;
    // A cancellation the lookup did not see (Asio's resolver ignores cancellation slots).
    if (cancelled_meanwhile(co_await asio::this_coro::cancellation_state)) {
        failure = "cancelled while connecting to " + where(o);
        co_return make_error_code(asio::error::operation_aborted);
    }
    auto c = std::make_shared<Connection>(strand, o, pool);
    beast::tcp_stream stream(strand);
    stream.expires_at(connect_deadline);
    auto [ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
    if (!ec && cancelled_meanwhile(co_await asio::this_coro::cancellation_state))
        ec = asio::error::operation_aborted;
    if (ec == beast::error::timeout) {
        failure = "connecting to " + where(o) + " timed out";
        co_return make_error_code(Errc::timeout);
    }
    if (ec == asio::error::operation_aborted) {
        failure = "cancelled while connecting to " + where(o);
        co_return ec;
    }
    if (ec) {
        failure = "cannot connect to " + where(o) + ": " + ec.message();
        co_return ec;
    }
    stream.socket().set_option(tcp::no_delay(true));
    if (!o.tls) {
        c->plain.emplace(stream.release_socket());
    } else {
        if (!tls) try {
                tls = shared_tls_context(config.tls.verify_peer, ca_file, ca_file_source);
            } catch (const std::invalid_argument& e) {  // a CA file that does not parse
                failure = e.what();
                co_return make_error_code(Errc::tls_error);
            }
        c->secure.emplace(stream.release_socket(), *tls);
        auto& s = *c->secure;
        SSL* handle = s.native_handle();
        const bool ip = is_ip_literal(o.host);
        if (!ip) SSL_set_tlsext_host_name(handle, o.host.c_str());
        if (config.tls.verify_peer) {
            // OpenSSL checks the name itself, so a mismatch has its own verify result.
            X509_VERIFY_PARAM* param = SSL_get0_param(handle);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (ip)
                X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str());
            else
                X509_VERIFY_PARAM_set1_host(param, o.host.c_str(), o.host.size());
        }
        // The sweeper closes the socket at the handshake's deadline.
        watch(c, std::min(deadline, Clock::now() + config.tls_handshake_timeout));
        error_code hec;
        {
            const UnwatchOnExit unwatch_on_exit{*this, c};
            std::tie(hec) = co_await s.async_handshake(ssl::stream_base::client, use_tuple);
        }
        // Also when the handshake finished just as the sweeper closed the socket under it.
        if (c->timed_out) {
            failure = "the TLS handshake with " + where(o) + " timed out";
            co_return make_error_code(Errc::timeout);
        }
        if (hec == asio::error::operation_aborted) {
            failure = "cancelled during the TLS handshake with " + where(o);
            co_return hec;
        }
        if (hec) {
            failure = "TLS handshake with " + where(o) + " failed: " + tls_failure(handle, hec);
            co_return hec;
        }
    }
    ++opened;
    out = std::move(c);
    co_return error_code{};
}

}  // namespace outbox
