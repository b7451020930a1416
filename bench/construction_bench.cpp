// What constructing outbox's objects costs the caller's thread (a RoutingDestination makes
// destinations inside async_send), beside the reference: loading the system's CA store into
// a TLS context, which every HttpClient did before contexts were shared and loaded lazily.
#include <outbox/credentials_providers.hpp>
#include <outbox/http_client.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sqs_destination.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdlib>

namespace {

namespace asio = boost::asio;

// The reference: one TLS client context with the system's CA store.
void BM_reference_load_ca_store(benchmark::State& state) {
    for (auto _ : state) {
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.set_default_verify_paths();
        benchmark::DoNotOptimize(ctx.native_handle());
    }
}
BENCHMARK(BM_reference_load_ca_store)->Unit(benchmark::kMicrosecond);

void BM_http_client(benchmark::State& state) {
    asio::io_context io;
    for (auto _ : state) {
        outbox::HttpClient client(io.get_executor());
        benchmark::DoNotOptimize(&client);
    }
    io.run();  // the destructors' posted closes
}
BENCHMARK(BM_http_client)->Unit(benchmark::kMicrosecond);

void BM_sqs_destination(benchmark::State& state) {
    asio::io_context io;
    auto credentials = outbox::make_static_credentials(io.get_executor(), {"AKID", "secret"});
    for (auto _ : state) {
        outbox::SqsDestination sqs(
            io.get_executor(),
            {.queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
             .credentials = credentials});
        benchmark::DoNotOptimize(&sqs);
    }
    io.run();
}
BENCHMARK(BM_sqs_destination)->Unit(benchmark::kMicrosecond);

void BM_payload_stager(benchmark::State& state) {
    asio::io_context io;
    auto credentials = outbox::make_static_credentials(io.get_executor(), {"AKID", "secret"});
    for (auto _ : state) {
        outbox::PayloadStager stager(
            io.get_executor(),
            {.bucket = "outbox-payloads", .region = "eu-west-1", .credentials = credentials});
        benchmark::DoNotOptimize(&stager);
    }
    io.run();
}
BENCHMARK(BM_payload_stager)->Unit(benchmark::kMicrosecond);

void BM_make_default_credentials(benchmark::State& state) {
    asio::io_context io;
    for (auto _ : state)
        benchmark::DoNotOptimize(outbox::make_default_credentials(io.get_executor()));
    io.run();
}
BENCHMARK(BM_make_default_credentials)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
    // The environment must not send the destinations' lookups to a profile file.
    ::setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
