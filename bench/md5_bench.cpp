// The MD5 a batch reply costs: ten bodies hashed in SIMD lanes (AVX-512, the fastest path
// and md5_many's on a CPU that has it; AVX2) beside OpenSSL's MD5 one body at a time, in the
// same run.
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

void ten_bodies_along(benchmark::State& state, outbox::detail::Md5Path path, const char* label) {
    if (!outbox::detail::md5_path_available(path)) {
        state.SkipWithError("this CPU cannot take that path");
        return;
    }
    TenBodies t(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        outbox::detail::md5_many_on(path, t.views, t.out);
        benchmark::DoNotOptimize(t.out.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0) * 10);
    state.SetLabel(label);
}

// What a batch reply costs: md5_many, along the fastest path this CPU has.
void BM_md5_ten_bodies_lanes(benchmark::State& state) {
    const auto best = outbox::detail::md5_best_path();
    ten_bodies_along(state, best,
                     best == outbox::detail::Md5Path::avx512 ? "fastest: AVX-512 lanes"
                     : best == outbox::detail::Md5Path::avx2 ? "fastest: AVX2 lanes"
                                                             : "fastest: OpenSSL");
}
BENCHMARK(BM_md5_ten_bodies_lanes)->Arg(256)->Arg(1024)->Arg(16384);

void BM_md5_ten_bodies_avx512(benchmark::State& state) {
    ten_bodies_along(state, outbox::detail::Md5Path::avx512, "AVX-512 lanes");
}
BENCHMARK(BM_md5_ten_bodies_avx512)->Arg(256)->Arg(1024)->Arg(16384);

void BM_md5_ten_bodies_avx2(benchmark::State& state) {
    ten_bodies_along(state, outbox::detail::Md5Path::avx2, "AVX2 lanes");
}
BENCHMARK(BM_md5_ten_bodies_avx2)->Arg(256)->Arg(1024)->Arg(16384);

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
