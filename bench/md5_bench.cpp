// The MD5 a batch reply costs: ten 1 KiB bodies hashed in AVX2 lanes (md5_many) beside
// OpenSSL's MD5 one body at a time, in the same run.
//
// Usage: md5_bench [Google Benchmark options]
#include "core/md5_lanes.hpp"

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {

struct TenBodies {
    std::vector<std::string> bodies;
    std::vector<std::string_view> views;
    std::vector<outbox::detail::Md5Digest> out;
    explicit TenBodies(std::size_t size) : out(10) {
        for (int i = 0; i < 10; ++i)
            bodies.push_back(std::string(size, static_cast<char>('a' + i)));
        views.assign(bodies.begin(), bodies.end());
    }
};

void BM_md5_ten_bodies_lanes(benchmark::State& state) {
    TenBodies t(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        outbox::detail::md5_many(t.views, t.out);
        benchmark::DoNotOptimize(t.out.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0) * 10);
    state.SetLabel(outbox::detail::md5_lanes_available() ? "AVX2 lanes" : "no AVX2: OpenSSL");
}
BENCHMARK(BM_md5_ten_bodies_lanes)->Arg(256)->Arg(1024)->Arg(16384);

void BM_md5_ten_bodies_openssl(benchmark::State& state) {
    TenBodies t(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        outbox::detail::md5_one_by_one(t.views, t.out);
        benchmark::DoNotOptimize(t.out.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0) * 10);
}
BENCHMARK(BM_md5_ten_bodies_openssl)->Arg(256)->Arg(1024)->Arg(16384);

}  // namespace

BENCHMARK_MAIN();
