// 08: your own credentials provider: here keys read from a file that a secrets agent
// rewrites when it rotates them (the first line the access key id, the second the secret).
// Cached by outbox, so the file is read once per hour rather than once per request.
//
//   08_custom_credentials QUEUE_URL KEYS_FILE
#include <outbox/credentials_provider.hpp>
#include <outbox/credentials_providers.hpp>
#include <outbox/send_blocking.hpp>
#include <outbox/sqs_destination.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;

class KeysFileCredentials final : public outbox::CredentialsProvider {
  public:
    KeysFileCredentials(asio::any_io_executor executor, std::string path)
        : executor_(std::move(executor)), path_(std::move(path)) {}

    std::string name() const override { return "keys file " + path_; }

  protected:
    void do_get_credentials(Handler handler) override {
        outbox::Credentials keys;
        boost::system::error_code ec;
        std::ifstream file(path_);
        if (!std::getline(file, keys.access_key_id) || !std::getline(file, keys.secret_access_key))
            ec = outbox::Errc::credentials_not_found;  // a chain would move on to the next
        // Valid for an hour: the caching provider asks again before then.
        keys.expiration = std::chrono::system_clock::now() + 1h;
        // Completions never run inside the call that starts them.
        asio::post(executor_, asio::append(std::move(handler), ec, std::move(keys)));
    }

  private:
    asio::any_io_executor executor_;
    std::string path_;
};

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s QUEUE_URL KEYS_FILE\n", argv[0]);
        return 2;
    }
    asio::thread_pool pool(1);
    outbox::SqsDestinationConfig config;
    config.queue_url = argv[1];
    config.credentials = outbox::make_caching_credentials(
        pool.get_executor(), std::make_shared<KeysFileCredentials>(pool.get_executor(), argv[2]));
    int status = 0;
    {
        outbox::SqsDestination queue(pool.get_executor(), config);
        outbox::Message event;
        event.body = R"({"type":"key.rotated"})";
        boost::system::error_code ec;
        auto receipt = outbox::send_blocking(queue, std::move(event), ec);
        std::printf("%s%s\n", ec ? "failed: " : "delivered, signed with the keys from the file",
                    ec ? (ec.message() + " " + receipt.diagnostics.message).c_str() : "");
        status = ec ? 1 : 0;
        outbox::close_blocking(queue, 5s);
    }
    pool.join();
    return status;
}
