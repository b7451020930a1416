// SigV4 signing cost per operation on one core, beside the floor: the same bytes hashed
// with OpenSSL and nothing else (SHA-256 of the body and of the canonical request, HMAC of
// the string to sign with a cached key). Also counts heap allocations per signature.
#include <outbox/sigv4.hpp>

#include "alloc_counter.hpp"

#include <benchmark/benchmark.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <string>

namespace {

using namespace outbox;
using std::chrono::system_clock;

const Credentials credentials{
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", {}, {}};

// A SendMessage request of the SQS JSON protocol with a 1 KiB JSON event as its body.
struct SqsRequest {
    std::string body;
    sigv4::Header headers[2] = {{"Content-Type", "application/x-amz-json-1.0"},
                                {"X-Amz-Target", "AmazonSQS.SendMessage"}};
    SqsRequest() {
        std::string event = R"({"type":"order.created","id":"5f0c6b1e","data":")";
        event.append(1024 - event.size() - 3, 'x');
        event += "\"}";
        body =
            R"({"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/orders","MessageBody":)";
        body += '"';
        for (char c : event) {
            if (c == '"') body += '\\';
            body += c;
        }
        body += "\"}";
    }
    sigv4::Request request(std::string_view payload_hash) const {
        return {.method = "POST",
                .host = "sqs.eu-west-1.amazonaws.com",
                .path = "/",
                .headers = headers,
                .payload_hash = payload_hash};
    }
};

const sigv4::Request presign_request{
    .method = "GET",
    .host = "examplebucket.s3.eu-west-1.amazonaws.com",
    .path = "/staged/2026/11/22/3f2a8c1e-6a57-4c1b-9d7e-0b1f1e2a3c4d"};

void report_allocations(benchmark::State& state, long before) {
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(outbox::bench::allocation_count() - before),
                           benchmark::Counter::kAvgIterations);
}

void BM_sign_sqs_send_message_1KiB(benchmark::State& state) {
    const SqsRequest sqs;
    const sigv4::Signer signer({.region = "eu-west-1", .service = "sqs"});
    sigv4::HeaderSignature sig;
    const auto now = system_clock::now();
    (void)signer.sign_headers(sqs.request(sigv4::payload_hash(sqs.body).view()), credentials, now,
                              sig);
    const long before = outbox::bench::allocation_count();
    for (auto _ : state) {
        const sigv4::PayloadHash hash = sigv4::payload_hash(sqs.body);
        (void)signer.sign_headers(sqs.request(hash.view()), credentials, now, sig);
        benchmark::DoNotOptimize(sig.signature.data());
    }
    report_allocations(state, before);
}
BENCHMARK(BM_sign_sqs_send_message_1KiB);

void BM_presign_s3_get(benchmark::State& state) {
    const sigv4::Signer signer(
        {.region = "eu-west-1", .service = "s3", .path_rule = sigv4::PathRule::s3});
    sigv4::PresignedQuery q;
    const auto now = system_clock::now();
    (void)signer.presign(presign_request, credentials, now, std::chrono::seconds(600), q);
    const long before = outbox::bench::allocation_count();
    for (auto _ : state) {
        (void)signer.presign(presign_request, credentials, now, std::chrono::seconds(600), q);
        benchmark::DoNotOptimize(q.query.data());
    }
    report_allocations(state, before);
}
BENCHMARK(BM_presign_s3_get);

// The floor: SHA-256 over `hashed` bytes (body, canonical request) plus one HMAC of a
// string to sign of `sts_size` bytes with the key's pads already absorbed.
void floor_loop(benchmark::State& state, const std::string& body, std::size_t canonical_size,
                std::size_t sts_size) {
    const std::string canonical(canonical_size, 'c');
    const std::string sts(sts_size, 's');
    unsigned char key[64] = {1, 2, 3};
    unsigned char pad[64];
    SHA256_CTX inner, outer;
    for (int i = 0; i < 64; ++i) pad[i] = key[i] ^ 0x36;
    SHA256_Init(&inner);
    SHA256_Update(&inner, pad, 64);
    for (int i = 0; i < 64; ++i) pad[i] = key[i] ^ 0x5c;
    SHA256_Init(&outer);
    SHA256_Update(&outer, pad, 64);
    unsigned char d[32];
    for (auto _ : state) {
        if (!body.empty())
            SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), d);
        SHA256(reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size(), d);
        SHA256_CTX c = inner;
        SHA256_Update(&c, sts.data(), sts.size());
        SHA256_Final(d, &c);
        c = outer;
        SHA256_Update(&c, d, 32);
        SHA256_Final(d, &c);
        benchmark::DoNotOptimize(d);
    }
}

void BM_floor_sqs_send_message_1KiB(benchmark::State& state) {
    const SqsRequest sqs;
    const sigv4::Signer signer({.region = "eu-west-1", .service = "sqs"});
    sigv4::HeaderSignature sig;
    sigv4::SigningTrace trace;
    (void)signer.sign_headers(sqs.request(sigv4::payload_hash(sqs.body).view()), credentials,
                              system_clock::now(), sig, &trace);
    floor_loop(state, sqs.body, trace.canonical_request.size(), trace.string_to_sign.size());
}
BENCHMARK(BM_floor_sqs_send_message_1KiB);

void BM_floor_presign_s3_get(benchmark::State& state) {
    const sigv4::Signer signer(
        {.region = "eu-west-1", .service = "s3", .path_rule = sigv4::PathRule::s3});
    sigv4::PresignedQuery q;
    sigv4::SigningTrace trace;
    (void)signer.presign(presign_request, credentials, system_clock::now(),
                         std::chrono::seconds(600), q, &trace);
    floor_loop(state, {}, trace.canonical_request.size(), trace.string_to_sign.size());
}
BENCHMARK(BM_floor_presign_s3_get);

// For reference: OpenSSL 3's one-shot HMAC(), which looks the digest up on every call.
void BM_reference_openssl_oneshot_hmac(benchmark::State& state) {
    const std::string sts(130, 's');
    unsigned char key[32] = {1, 2, 3};
    unsigned char d[32];
    unsigned int len = 0;
    for (auto _ : state) {
        HMAC(EVP_sha256(), key, sizeof key, reinterpret_cast<const unsigned char*>(sts.data()),
             sts.size(), d, &len);
        benchmark::DoNotOptimize(d);
    }
}
BENCHMARK(BM_reference_openssl_oneshot_hmac);

}  // namespace

BENCHMARK_MAIN();
