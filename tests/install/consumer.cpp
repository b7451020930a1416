// Built against an installed outbox (tests/install) and by Conan's test_package: signs
// AWS's get-vanilla example and checks the published signature, then has an SqsDestination
// refuse an invalid message (no network needed).
#include <outbox/credentials_providers.hpp>
#include <outbox/sigv4.hpp>
#include <outbox/sqs_destination.hpp>
#ifdef OUTBOX_CONSUMER_KAFKA
#include <outbox/kafka_destination.hpp>
#endif
#ifdef OUTBOX_CONSUMER_POSTGRESQL
#include <outbox/postgresql_store.hpp>
#endif

#include <boost/asio/io_context.hpp>

#include <iostream>

int main() {
    const outbox::sigv4::Signer signer({.region = "us-east-1", .service = "service"});
    const outbox::Credentials credentials{
        .access_key_id = "AKIDEXAMPLE",
        .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
    std::chrono::system_clock::time_point when;
    if (outbox::sigv4::parse_amz_date("20150830T123600Z", when)) return 1;
    outbox::sigv4::HeaderSignature signature;
    if (auto ec =
            signer.sign_headers({.host = "example.amazonaws.com"}, credentials, when, signature)) {
        std::cerr << "signing failed: " << ec.message() << "\n";
        return 1;
    }
    const bool ok =
        signature.signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    std::cout << "outbox consumer: " << signature.authorization
              << (ok ? " (matches AWS's vector)" : " (WRONG)") << "\n";
    if (!ok) return 1;

    boost::asio::io_context io;
    outbox::SqsDestination sqs(
        io.get_executor(),
        {.queue_url = "http://127.0.0.1:9/000000000000/consumer",
         .region = "us-east-1",
         .credentials = outbox::make_static_credentials(io.get_executor(), credentials)});
    outbox::Message m;
    m.body = "a control character: \x01";
    boost::system::error_code result;
    sqs.async_send(std::move(m),
                   [&](boost::system::error_code ec, outbox::Receipt) { result = ec; });
    io.run();
    std::cout << "outbox consumer: SqsDestination refused an invalid message: " << result.message()
              << "\n";
    if (result != outbox::Errc::invalid_message) return 1;
#ifdef OUTBOX_CONSUMER_KAFKA
    // outbox::kafka from the same package: a delay means nothing to Kafka, refused at once.
    boost::system::error_code kafka_result = boost::asio::error::would_block;
    {
        outbox::KafkaDestination kafka(io.get_executor(),
                                       {.bootstrap_servers = "127.0.0.1:9",
                                        .topic = "consumer",
                                        .security = outbox::KafkaSecurity::plaintext});
        outbox::Message delayed;
        delayed.body = "later";
        delayed.delay = std::chrono::seconds(5);
        kafka.async_send(std::move(delayed),
                         [&](boost::system::error_code ec, outbox::Receipt) { kafka_result = ec; });
        io.restart();
        while (kafka_result == boost::asio::error::would_block && io.run_one() != 0) {
        }
    }
    std::cout << "outbox consumer: KafkaDestination refused a delayed message: "
              << kafka_result.message() << "\n";
    if (kafka_result != outbox::Errc::invalid_message) return 1;
#endif
#ifdef OUTBOX_CONSUMER_POSTGRESQL
    // outbox::postgresql from the same package: nothing listens on port 9, and the error says
    // where it tried without the password.
    try {
        outbox::open_postgresql_store("postgresql://app:secret@127.0.0.1:9/app?connect_timeout=2");
        return 1;
    } catch (const outbox::StoreError& e) {
        const std::string what = e.what();
        std::cout << "outbox consumer: the PostgreSQL store could not connect: " << what << "\n";
        if (what.find("secret") != std::string::npos ||
            what.find("127.0.0.1:9") == std::string::npos)
            return 1;
    }
#endif
    return 0;
}
