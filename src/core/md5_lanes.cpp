#include "core/md5_lanes.hpp"

#include <openssl/md5.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace outbox::detail {

namespace {

constexpr std::size_t lanes = 8;        // AVX2
constexpr std::size_t wide_lanes = 16;  // AVX-512

// RFC 1321's sine table and per-round shifts.
constexpr std::uint32_t k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
constexpr int shift[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                           5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                           4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                           6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

constexpr int word_of(int i) {
    return i < 16 ? i : i < 32 ? (5 * i + 1) % 16 : i < 48 ? (3 * i + 5) % 16 : (7 * i) % 16;
}

// Blocks in the padded message of `size` bytes: the data, the 0x80 byte and the 8-byte length
// round up to whole 64-byte blocks.
constexpr std::size_t padded_blocks(std::size_t size) {
    return (size + 8) / 64 + 1;
}

// Block `block` of an input's padded message (data, 0x80, zeros, its length in bits): a view
// of the input itself when the block lies within it, else built in `scratch`.

const unsigned char* padded_block(std::string_view in, std::size_t block,
                                  unsigned char (&scratch)[64]) {
    const std::size_t begin = block * 64;
    if (begin + 64 <= in.size()) return reinterpret_cast<const unsigned char*>(in.data()) + begin;
    std::memset(scratch, 0, 64);
    if (begin < in.size()) std::memcpy(scratch, in.data() + begin, in.size() - begin);
    if (begin <= in.size() && in.size() < begin + 64) scratch[in.size() - begin] = 0x80;
    if (block == padded_blocks(in.size()) - 1) {
        const std::uint64_t bits = static_cast<std::uint64_t>(in.size()) * 8;
        for (int b = 0; b < 8; ++b) scratch[56 + b] = static_cast<unsigned char>(bits >> (8 * b));
    }
    return scratch;
}

// Each input's block count into blocks[0 .. n); returns the largest, the passes the lanes make.
std::size_t count_blocks(const std::string_view* in, std::size_t n, std::size_t* blocks) {
    std::size_t most = 0;
    for (std::size_t l = 0; l < n; ++l) {
        blocks[l] = padded_blocks(in[l].size());
        most = std::max(most, blocks[l]);
    }
    return most;
}

// MD5's initial state, the same in every lane.
constexpr std::uint32_t initial_state[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};

// Lane l's digest is word l of each of a, b, c, d (state[s][l]), little-endian.
template <std::size_t width>
void write_digests(const std::uint32_t (&state)[4][width], std::size_t n, Md5Digest* out) {
    for (std::size_t l = 0; l < n; ++l)
        for (int s = 0; s < 4; ++s) std::memcpy(out[l].data() + 4 * s, &state[s][l], 4);
}

// Round i of MD5 on eight lanes, unrolled (rounds256) so that its constants are immediates.
template <int i>
__attribute__((target("avx2"), always_inline)) inline void round256(
    __m256i& a, __m256i& b, __m256i& c, __m256i& d, const std::uint32_t (&words)[16][lanes]) {
    __m256i f;
    if constexpr (i < 16)  // d ^ (b & (c ^ d))
        f = _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)));
    else if constexpr (i < 32)  // c ^ (d & (b ^ c))
        f = _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)));
    else if constexpr (i < 48)
        f = _mm256_xor_si256(_mm256_xor_si256(b, c), d);
    else  // c ^ (b | ~d)
        f = _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))));
    const __m256i m = _mm256_load_si256(reinterpret_cast<const __m256i*>(words[word_of(i)]));
    // a + k + m does not wait for b, which the previous round has just made.
    const __m256i akm =
        _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(k[i])), m));
    f = _mm256_add_epi32(f, akm);
    a = d;
    d = c;
    c = b;
    constexpr int rotation = shift[i];
    b = _mm256_add_epi32(
        b, _mm256_or_si256(_mm256_slli_epi32(f, rotation), _mm256_srli_epi32(f, 32 - rotation)));
}

template <int... i>
__attribute__((target("avx2"), always_inline)) inline void rounds256(
    std::integer_sequence<int, i...>, __m256i& a, __m256i& b, __m256i& c, __m256i& d,
    const std::uint32_t (&words)[16][lanes]) {
    (round256<i>(a, b, c, d, words), ...);
}

// Up to eight inputs in the lanes of one register each for a, b, c, d. Lanes whose message
// has ended keep their state while the longer ones go on.
__attribute__((target("avx2"))) void md5_eight(const std::string_view* in, std::size_t n,
                                               Md5Digest* out) {
    std::size_t blocks[lanes] = {};
    const std::size_t most = count_blocks(in, n, blocks);
    __m256i a = _mm256_set1_epi32(static_cast<int>(initial_state[0])),
            b = _mm256_set1_epi32(static_cast<int>(initial_state[1])),
            c = _mm256_set1_epi32(static_cast<int>(initial_state[2])),
            d = _mm256_set1_epi32(static_cast<int>(initial_state[3]));
    alignas(32) std::uint32_t words[16][lanes];
    unsigned char scratch[lanes][64];
    for (std::size_t block = 0; block < most; ++block) {
        alignas(32) std::uint32_t live[lanes] = {};
        for (std::size_t l = 0; l < lanes; ++l) {
            if (l >= n || block >= blocks[l]) {
                for (auto& w : words) w[l] = 0;
                continue;
            }
            live[l] = 0xffffffffu;
            const unsigned char* p = padded_block(in[l], block, scratch[l]);
            for (int w = 0; w < 16; ++w) std::memcpy(&words[w][l], p + 4 * w, 4);  // little-endian
        }
        const __m256i active = _mm256_load_si256(reinterpret_cast<const __m256i*>(live));
        const __m256i a0 = a, b0 = b, c0 = c, d0 = d;
        rounds256(std::make_integer_sequence<int, 64>{}, a, b, c, d, words);
        a = _mm256_blendv_epi8(a0, _mm256_add_epi32(a0, a), active);
        b = _mm256_blendv_epi8(b0, _mm256_add_epi32(b0, b), active);
        c = _mm256_blendv_epi8(c0, _mm256_add_epi32(c0, c), active);
        d = _mm256_blendv_epi8(d0, _mm256_add_epi32(d0, d), active);
    }
    alignas(32) std::uint32_t state[4][lanes];
    _mm256_store_si256(reinterpret_cast<__m256i*>(state[0]), a);
    _mm256_store_si256(reinterpret_cast<__m256i*>(state[1]), b);
    _mm256_store_si256(reinterpret_cast<__m256i*>(state[2]), c);
    _mm256_store_si256(reinterpret_cast<__m256i*>(state[3]), d);
    write_digests(state, n, out);
}

// Round i of MD5 on sixteen lanes, its constants in the instructions: a three-input logic
// instruction for the round's function (truth tables indexed by b << 2 | c << 1 | d: b ? c : d;
// d ? b : c; b ^ c ^ d; c ^ (b | ~d)) and a rotate instead of two shifts and an or.
template <int i>
__attribute__((target("avx512f"), always_inline)) inline void round512(__m512i& a, __m512i& b,
                                                                       __m512i& c, __m512i& d,
                                                                       const __m512i* m) {
    constexpr int table = i < 16 ? 0xca : i < 32 ? 0xe4 : i < 48 ? 0x96 : 0x39;
    // a + k + m does not wait for b, which the previous round has just made: only the
    // function, one add, the rotate and the last add do.
    const __m512i akm = _mm512_add_epi32(
        a, _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(k[i])), m[word_of(i)]));
    const __m512i f = _mm512_add_epi32(_mm512_ternarylogic_epi32(b, c, d, table), akm);
    a = d;
    d = c;
    c = b;
    constexpr int rotation = shift[i];  // a constant at -O0 too, where the intrinsic is a macro
    b = _mm512_add_epi32(b, _mm512_rol_epi32(f, rotation));
}

template <int... i>
__attribute__((target("avx512f"), always_inline)) inline void rounds512(
    std::integer_sequence<int, i...>, __m512i& a, __m512i& b, __m512i& c, __m512i& d,
    const __m512i* m) {
    (round512<i>(a, b, c, d, m), ...);
}

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which it then calls
// "maybe uninitialized" (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// rows[l] is lane l's 64-byte block; afterwards rows[w] is word w of every lane's block.
// Pairs of 32-bit and 64-bit words interleaved within each 128-bit quarter, then the quarters
// exchanged between registers: 64 shuffles where gathering or copying word by word costs more.
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512i (&rows)[16]) {
    __m512i t[16];
    for (int r = 0; r < 16; r += 2) {
        t[r] = _mm512_unpacklo_epi32(rows[r], rows[r + 1]);
        t[r + 1] = _mm512_unpackhi_epi32(rows[r], rows[r + 1]);
    }
    __m512i u[16];  // u[4g + j], quarter q: word 4q + j of rows 4g .. 4g + 3
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; ++j) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
        const __m512i x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xee);
        const __m512i x2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
        const __m512i x3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xee);
        rows[j] = _mm512_shuffle_i32x4(x0, x2, 0x88);
        rows[4 + j] = _mm512_shuffle_i32x4(x0, x2, 0xdd);
        rows[8 + j] = _mm512_shuffle_i32x4(x1, x3, 0x88);
        rows[12 + j] = _mm512_shuffle_i32x4(x1, x3, 0xdd);
    }
}

// Up to sixteen inputs in the lanes of one AVX-512 register each, as md5_eight does eight;
// the rounds unrolled (round512), each block's words transposed in registers.
__attribute__((target("avx512f"))) void md5_sixteen(const std::string_view* in, std::size_t n,
                                                    Md5Digest* out) {
    alignas(64) static constexpr unsigned char no_block[64] = {};  // lanes without an input
    std::size_t blocks[wide_lanes] = {};
    const std::size_t most = count_blocks(in, n, blocks);
    __m512i a = _mm512_set1_epi32(static_cast<int>(initial_state[0])),
            b = _mm512_set1_epi32(static_cast<int>(initial_state[1])),
            c = _mm512_set1_epi32(static_cast<int>(initial_state[2])),
            d = _mm512_set1_epi32(static_cast<int>(initial_state[3]));
    unsigned char scratch[wide_lanes][64];
    for (std::size_t block = 0; block < most; ++block) {
        __mmask16 active = 0;
        __m512i m[16];
        for (std::size_t l = 0; l < wide_lanes; ++l) {
            const unsigned char* p = no_block;
            if (l < n && block < blocks[l]) {
                active = static_cast<__mmask16>(active | (1u << l));
                p = padded_block(in[l], block, scratch[l]);
            }
            m[l] = _mm512_loadu_si512(p);  // little-endian words, as MD5 reads them
        }
        transpose16(m);
        const __m512i a0 = a, b0 = b, c0 = c, d0 = d;
        rounds512(std::make_integer_sequence<int, 64>{}, a, b, c, d, m);
        a = _mm512_mask_add_epi32(a0, active, a0, a);
        b = _mm512_mask_add_epi32(b0, active, b0, b);
        c = _mm512_mask_add_epi32(c0, active, c0, c);
        d = _mm512_mask_add_epi32(d0, active, d0, d);
    }
    alignas(64) std::uint32_t state[4][wide_lanes];
    _mm512_store_si512(state[0], a);
    _mm512_store_si512(state[1], b);
    _mm512_store_si512(state[2], c);
    _mm512_store_si512(state[3], d);
    write_digests(state, n, out);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

bool md5_path_available(Md5Path path) noexcept {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    switch (path) {
        case Md5Path::openssl:
            return true;
        case Md5Path::avx2:
            return avx2;
        case Md5Path::avx512:
            return avx512;
    }
    return false;
}

namespace {
// The values of OUTBOX_MD5_LANES that cap the path.
bool is_known_cap(std::string_view cap) {
    return cap == "avx2" || cap == "openssl";
}
}  // namespace

Md5Path md5_path_capped(std::string_view cap) noexcept {
    // OUTBOX_MD5_LANES=avx2 (or openssl) caps the path: on CPUs whose clock drops while
    // 512-bit instructions run (Intel's Skylake and Cascade Lake servers), the rest of the
    // process may lose more than the hashing gains.
    if (cap == "openssl") return Md5Path::openssl;
    if (cap != "avx2" && md5_path_available(Md5Path::avx512)) return Md5Path::avx512;
    if (md5_path_available(Md5Path::avx2)) return Md5Path::avx2;
    return Md5Path::openssl;
}

namespace {
std::string_view md5_lanes_setting() noexcept {
    static const char* const setting = std::getenv("OUTBOX_MD5_LANES");
    return setting != nullptr ? setting : "";
}
}  // namespace

Md5Path md5_best_path() noexcept {
    static const Md5Path best = md5_path_capped(md5_lanes_setting());
    return best;
}

std::string_view md5_lanes_ignored_setting() noexcept {
    const std::string_view setting = md5_lanes_setting();
    return is_known_cap(setting) ? std::string_view{} : setting;
}

void md5_one_by_one(std::span<const std::string_view> inputs, std::span<Md5Digest> out) noexcept {
    for (std::size_t i = 0; i < inputs.size(); ++i)
        MD5(reinterpret_cast<const unsigned char*>(inputs[i].data()), inputs[i].size(),
            out[i].data());
}

void md5_many_on(Md5Path path, std::span<const std::string_view> inputs,
                 std::span<Md5Digest> out) noexcept {
    const std::size_t width = path == Md5Path::avx512 ? wide_lanes
                              : path == Md5Path::avx2 ? lanes
                                                      : 0;
    std::size_t done = 0;
    // Lanes pay for themselves from three inputs on; fewer go one by one.
    while (width != 0 && inputs.size() - done >= 3) {
        const std::size_t count = std::min(width, inputs.size() - done);
        if (path == Md5Path::avx512)
            md5_sixteen(inputs.data() + done, count, out.data() + done);
        else
            md5_eight(inputs.data() + done, count, out.data() + done);
        done += count;
    }
    md5_one_by_one(inputs.subspan(done), out.subspan(done));
}

std::size_t md5_lane_width() noexcept {
    switch (md5_best_path()) {
        case Md5Path::avx512:
            return wide_lanes;
        case Md5Path::avx2:
            return lanes;
        case Md5Path::openssl:
            break;
    }
    return 1;
}

void md5_many(std::span<const std::string_view> inputs, std::span<Md5Digest> out) noexcept {
    md5_many_on(md5_best_path(), inputs, out);
}

}  // namespace outbox::detail
