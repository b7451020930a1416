#include "test_http_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace outbox::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string TestRequest::header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
        if (n.size() == name.size() &&
            std::equal(n.begin(), n.end(), name.begin(),
                       [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
            return v;
    }
    return {};
}

struct TestHttpServer::State {
    std::function<TestReply(const TestRequest&)> handler;
    Options options;
    asio::io_context io;
    tcp::acceptor acceptor{io};
    std::unique_ptr<asio::ssl::context> tls;
    std::thread accept_thread;

    mutable std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::thread> connection_threads;
    std::vector<int> open_fds;
    std::vector<TestRequest> requests;
    std::size_t connections = 0;
    std::size_t client_closes = 0;
    std::size_t server_closes = 0;
    std::atomic<bool> stopping{false};

    template <class Pred>
    bool wait(Pred pred, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, timeout, pred);
    }

    void note(std::size_t State::*counter) {
        std::lock_guard lock(mutex);
        ++(this->*counter);
        changed.notify_all();
    }

    template <class Stream>
    void write_all(Stream& s, std::string_view bytes) {
        asio::write(s, asio::buffer(bytes.data(), bytes.size()));
    }

    static std::string serialize(const TestReply& reply, bool close) {
        http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
        for (const auto& [n, v] : reply.headers) res.insert(n, v);
        res.body() = reply.body;
        res.keep_alive(!close);
        res.prepare_payload();
        std::ostringstream os;
        os << res;
        return os.str();
    }

    // Serves one connection until either side closes it. Returns true when the client closed.
    template <class Stream>
    bool serve(Stream& stream, int fd, std::size_t index) {
        beast::flat_buffer buffer;
        for (;;) {
            if (options.close_idle_after.count() > 0 && buffer.size() == 0) {
                pollfd p{fd, POLLIN, 0};
                if (::poll(&p, 1, static_cast<int>(options.close_idle_after.count())) == 0)
                    return false;  // idle
            }
            http::request<http::string_body> req;
            beast::error_code ec;
            http::read(stream, buffer, req, ec);
            if (ec == http::error::end_of_stream || ec == asio::error::eof ||
                ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset)
                return true;
            if (ec) return false;  // idle timeout, or the server stopping
            TestRequest r;
            r.method = std::string(req.method_string());
            r.target = std::string(req.target());
            for (const auto& f : req) r.headers.emplace_back(f.name_string(), f.value());
            r.body = req.body();
            r.connection = index;
            {
                std::lock_guard lock(mutex);
                requests.push_back(r);
                changed.notify_all();
            }
            const TestReply reply = handler(r);
            if (reply.delay.count() > 0) {
                std::unique_lock lock(mutex);
                changed.wait_for(lock, reply.delay, [&] { return stopping.load(); });
            }
            if (stopping) return false;
            try {
                switch (reply.action) {
                    case TestReply::Action::close:
                        return false;
                    case TestReply::Action::raw:
                        write_all(stream, reply.raw);
                        return false;
                    case TestReply::Action::hold: {
                        // Until the client closes (readable at EOF), or the destructor shuts
                        // the socket down.
                        pollfd p{fd, POLLIN, 0};
                        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
                        }
                        return !stopping;
                    }
                    case TestReply::Action::stream_forever: {
                        write_all(stream, reply.raw);
                        const std::string zeros(64 * 1024, '0');
                        while (!stopping) write_all(stream, zeros);  // throws once the client goes
                        return false;
                    }
                    case TestReply::Action::respond_and_close:
                        write_all(stream, serialize(reply, true));
                        return false;
                    case TestReply::Action::drip: {
                        const std::string bytes = serialize(reply, !req.keep_alive());
                        for (std::size_t at = 0; at < bytes.size() && !stopping; at += 16) {
                            write_all(stream, std::string_view(bytes).substr(at, 16));
                            std::this_thread::sleep_for(reply.drip_interval);
                        }
                        break;
                    }
                    case TestReply::Action::respond:
                        write_all(stream, serialize(reply, !req.keep_alive()));
                        break;
                }
            } catch (const std::exception&) {
                return true;  // the client went away while we wrote
            }
            if (!req.keep_alive()) return false;
        }
    }

    void run_connection(tcp::socket socket, std::size_t index) {
        const int fd = socket.native_handle();
        bool client_closed = false;
        try {
            if (tls) {
                asio::ssl::stream<tcp::socket&> stream(socket, *tls);
                beast::error_code ec;
                stream.handshake(asio::ssl::stream_base::server, ec);
                client_closed = ec ? true : serve(stream, fd, index);
            } else {
                client_closed = serve(socket, fd, index);
            }
        } catch (const std::exception&) {
            client_closed = true;
        }
        {
            std::lock_guard lock(mutex);
            std::erase(open_fds, fd);
        }
        beast::error_code ignored;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        note(client_closed ? &State::client_closes : &State::server_closes);
    }

    void accept_loop() {
        while (!stopping) {
            beast::error_code ec;
            tcp::socket socket(io);
            acceptor.accept(socket, ec);
            if (ec || stopping) return;
            std::lock_guard lock(mutex);
            const std::size_t index = ++connections;
            open_fds.push_back(socket.native_handle());
            connection_threads.emplace_back([this, s = std::move(socket), index]() mutable {
                run_connection(std::move(s), index);
            });
            changed.notify_all();
        }
    }
};

TestHttpServer::TestHttpServer(std::function<TestReply(const TestRequest&)> handler)
    : TestHttpServer(std::move(handler), Options{}) {}

TestHttpServer::TestHttpServer(std::function<TestReply(const TestRequest&)> handler,
                               Options options)
    : state_(std::make_shared<State>()) {
    state_->handler = std::move(handler);
    state_->options = std::move(options);
    if (state_->options.tls) {
        state_->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        state_->tls->use_certificate_chain_file(state_->options.cert_file);
        state_->tls->use_private_key_file(state_->options.key_file, asio::ssl::context::pem);
    }
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen();
    state_->accept_thread = std::thread([s = state_.get()] { s->accept_loop(); });
}

TestHttpServer::~TestHttpServer() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping = true;
        state_->changed.notify_all();  // ends delays
    }
    ::shutdown(state_->acceptor.native_handle(), SHUT_RDWR);
    state_->accept_thread.join();
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(state_->mutex);
        for (int fd : state_->open_fds) ::shutdown(fd, SHUT_RDWR);
        threads.swap(state_->connection_threads);
    }
    for (auto& t : threads) t.join();
}

std::uint16_t TestHttpServer::port() const {
    return state_->acceptor.local_endpoint().port();
}

std::string TestHttpServer::url(std::string_view path) const {
    return std::string(state_->options.tls ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(port()) + std::string(path);
}

std::size_t TestHttpServer::connections() const {
    std::lock_guard lock(state_->mutex);
    return state_->connections;
}

std::size_t TestHttpServer::requests() const {
    std::lock_guard lock(state_->mutex);
    return state_->requests.size();
}

std::vector<TestRequest> TestHttpServer::received() const {
    std::lock_guard lock(state_->mutex);
    return state_->requests;
}

bool TestHttpServer::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) {
    return state_->wait([&] { return state_->requests.size() >= n; }, timeout);
}

bool TestHttpServer::wait_for_client_closes(std::size_t n, std::chrono::milliseconds timeout) {
    return state_->wait([&] { return state_->client_closes >= n; }, timeout);
}

bool TestHttpServer::wait_for_server_closes(std::size_t n, std::chrono::milliseconds timeout) {
    return state_->wait([&] { return state_->server_closes >= n; }, timeout);
}

namespace {

void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0)
        throw std::runtime_error("test certificates: command failed: " + command);
}

void make_ca_and_server(const std::string& dir, const std::string& prefix) {
    const std::string ca = dir + "/" + prefix + "ca";
    const std::string server = dir + "/" + prefix + "server";
    run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=outbox-test-" + prefix +
        "ca -keyout " + ca + ".key -out " + ca + ".pem");
    run("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + server + ".key -out " +
        server + ".csr");
    std::ofstream(server + ".ext") << "subjectAltName=DNS:localhost\n";
    run("openssl x509 -req -in " + server + ".csr -CA " + ca + ".pem -CAkey " + ca +
        ".key -CAcreateserial -days 2 "
        "-extfile " +
        server + ".ext -out " + server + ".pem");
    // The same server, certified by the same CA, but expired a day ago.
    run("openssl x509 -req -in " + server + ".csr -CA " + ca + ".pem -CAkey " + ca +
        ".key -CAcreateserial -days -1 -extfile " + server + ".ext -out " + server +
        "-expired.pem");
}

}  // namespace

const TestCertificates& test_certificates() {
    // Owns the folder: removed when the program ends, after every test is done with it.
    struct Owned : TestCertificates {
        Owned() {
            namespace fs = std::filesystem;
            dir = (fs::temp_directory_path() / ("outbox-test-certs-" + std::to_string(::getpid())))
                      .string();
            fs::create_directories(dir);
            make_ca_and_server(dir, "");
            make_ca_and_server(dir, "other-");
            ca_file = dir + "/ca.pem";
            cert_file = dir + "/server.pem";
            key_file = dir + "/server.key";
            other_ca_file = dir + "/other-ca.pem";
            other_cert_file = dir + "/other-server.pem";
            other_key_file = dir + "/other-server.key";
            expired_cert_file = dir + "/server-expired.pem";
        }
        ~Owned() { std::filesystem::remove_all(dir); }
    };
    static const Owned certs;
    return certs;
}

}  // namespace outbox::test
