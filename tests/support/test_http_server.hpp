// A scriptable HTTP/1.1 server for tests: listens on 127.0.0.1 (ephemeral port), plain or
// TLS, one thread per connection, and reports what happened so tests can wait on events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace outbox::test {

struct TestRequest {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::size_t connection = 0;  // 1-based index of the connection it came on

    std::string header(std::string_view name) const;
};

struct TestReply {
    enum class Action {
        respond,            // send the response, keep the connection if HTTP allows
        respond_and_close,  // send it with Connection: close, then close
        close,              // close without answering (the reply is lost)
        drip,               // send the response a few bytes at a time, drip_interval apart
        raw,                // send `raw` verbatim, then close
        hold,               // never answer: keep the connection until the client closes it
        stream_forever,     // send `raw` (a header), then zero bytes until the client stops reading
    };
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers{};
    std::string body{};
    Action action = Action::respond;
    std::chrono::milliseconds delay{0};  // before answering (cut short when the server stops)
    std::chrono::milliseconds drip_interval{20};
    std::string raw{};
};

class TestHttpServer {
  public:
    struct Options {
        bool tls = false;
        std::string cert_file{};
        std::string key_file{};
        // Close a kept-alive connection after this long without a request (0: never).
        std::chrono::milliseconds close_idle_after{0};
    };

    explicit TestHttpServer(std::function<TestReply(const TestRequest&)> handler);
    TestHttpServer(std::function<TestReply(const TestRequest&)> handler, Options options);
    ~TestHttpServer();  // stops accepting, closes every connection, joins every thread
    TestHttpServer(const TestHttpServer&) = delete;
    TestHttpServer& operator=(const TestHttpServer&) = delete;

    std::uint16_t port() const;
    std::string url(std::string_view path = "/") const;  // http(s)://127.0.0.1:PORT/path

    std::size_t connections() const;  // accepted so far
    std::size_t requests() const;     // read so far
    std::vector<TestRequest> received() const;

    // Block until the condition holds or `timeout` passes; return whether it holds.
    bool wait_for_requests(std::size_t n,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // Connections whose peer (the client) closed them, and ones the server closed itself.
    bool wait_for_client_closes(std::size_t n,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));
    bool wait_for_server_closes(std::size_t n,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));

    struct State;

  private:
    std::shared_ptr<State> state_;
};

/// A CA and certificates made with the openssl program in a fresh temporary folder:
/// ca.pem/server.pem/server.key (SAN DNS:localhost only) and a second, untrusted CA with
/// its own server certificate (other-ca.pem, other-server.pem/key, also for localhost), and
/// an expired certificate for localhost from the first CA (server-expired.pem, key_file).
struct TestCertificates {
    std::string dir;
    std::string ca_file, cert_file, key_file;
    std::string other_ca_file, other_cert_file, other_key_file;
    std::string expired_cert_file;
};
const TestCertificates& test_certificates();

}  // namespace outbox::test
