// A product with group-wise int4 weights for a CPU, `torch.ops.ttsopt_t3.int4_linear`: what
// `quant.Int4Linear` runs where this CPU has AVX-512 VNNI or AVX2.
//
// Why: a decode step at a few rows is bound by reading its weights, and int4 reads half of int8's
// bytes; torch's own CPU int4 kernel (`_weight_int4pack_mm_for_cpu`) unpacks them well below the
// memory's speed on the CPUs measured here (README), so its steps were slower than int8's. Here the
// weights are unpacked in registers and multiplied by VNNI dot products (four u8 x s8 products
// summed into each of sixteen int32 lanes), so the loop only streams the packed bytes.
//
// Arithmetic. A weight is s * q + m, q in 0..15, with a scale s and a minimum m (half precision) per
// output and group of GROUP inputs. Each input row is quantized to u8 with a scale a and a zero
// point z of its own (asymmetric, over the row's range). For one output and group g, with D the
// int32 sum of the group's u8 inputs times q, and A the sum of its u8 inputs:
//   sum x * w = a * (s * D + m * (A - z * GROUP) - z * s * Q)
// where Q is the sum of the group's q; sum over g of s * Q is precomputed per output (CSUM). The
// int32 sums are exact, the rest float32.
//
// Layout (`quant.pack_int4`): PACKED (N/16, K/8, 64) bytes: for sixteen outputs and eight inputs
// k..k+7, byte 4n+j holds q[n][k+j] in its low half and q[n][k+4+j] in its high half. SCALES and
// MINS (N/16, K/GROUP, 16) half.
//
// Kernels, by what the build's -march allows (`int4_isa` says which was built):
// - AVX-512 VNNI: one `vpdpbusd` per row and half of a 64-byte block.
// - AVX2 (with FMA and F16C): each 64-byte block as two halves of eight outputs; `vpmaddubsw`
//   multiplies u8 inputs by the nibbles and sums pairs to int16 (at most 2 * 255 * 15 per pair;
//   two blocks' low and high sums added stay below 2^15, so nothing saturates), `vpmaddwd` by ones
//   sums those to int32: the same exact sums as VNNI's, in more instructions.
// - Otherwise plain loops (slowly; for the tests on such CPUs, never chosen for speed:
//   `quant.Int4Linear` takes torch's kernel there).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#if defined(__AVX512VNNI__) || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Input rows per pass over a block of sixteen outputs' weights: each unpacked 64-byte chunk feeds
// that many rows' dot products, and each row's accumulator is its own dependency chain. AVX-512 has
// the registers for eight rows (sixteen accumulators); AVX2's sixteen registers hold four.
#ifdef __AVX512VNNI__
constexpr int64_t kTile = 8;
#else
constexpr int64_t kTile = 4;
#endif

struct Rows {  // the input rows quantized to u8, with what the arithmetic above needs of each
  std::vector<uint8_t> q;
  std::vector<float> scale, zero, sums;  // sums: (rows, groups), A - z * GROUP
};

// Plain loops the compiler vectorizes: a value rounds half up where `nearbyint` would round half to
// even, which moves an input exactly halfway between two steps by one step (tests bound it).
Rows quantize_rows(const float* x, int64_t M, int64_t K, int64_t group) {
  const int64_t G = K / group;
  Rows r{std::vector<uint8_t>(M * K), std::vector<float>(M), std::vector<float>(M), std::vector<float>(M * G)};
  for (int64_t i = 0; i < M; ++i) {
    const float* row = x + i * K;
    float lo = 0.f, hi = 0.f;  // the range holds zero, so zero is exact
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int64_t k = 0; k < K; ++k) {
      lo = std::min(lo, row[k]);
      hi = std::max(hi, row[k]);
    }
    const float scale = hi > lo ? (hi - lo) / 255.f : 1.f;
    const float zero = std::nearbyint(-lo / scale), inv = 1.f / scale;
    r.scale[i] = scale;
    r.zero[i] = zero;
    uint8_t* qr = r.q.data() + i * K;
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = g * group; k < (g + 1) * group; ++k) {
        const float v = std::min(255.f, std::max(0.f, row[k] * inv + zero));
        const int32_t q = static_cast<int32_t>(v + 0.5f);
        qr[k] = static_cast<uint8_t>(q);
        sum += q;
      }
      r.sums[i * G + g] = static_cast<float>(sum) - zero * static_cast<float>(group);
    }
  }
  return r;
}

struct Weights {
  const uint8_t* packed;
  const at::Half* scales;
  const at::Half* mins;
  const float* csum;
  const float* bias;  // null: none
  int64_t N, K, group;
};

// Rows R0 .. R0 + T of the output for outputs 16b .. 16b + 15, T <= kTile.
#ifdef __AVX512VNNI__
template <int T>
void block(const Rows& x, const Weights& w, int64_t b, int64_t r0, float* out) {
  const int64_t K = w.K, G = K / w.group, chunks = w.group / 8;
  const uint8_t* wb = w.packed + b * K * 8;
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i d[T];
    for (int t = 0; t < T; ++t) d[t] = _mm512_setzero_si512();
    const uint8_t* wg = wb + g * chunks * 64;
    for (int64_t c = 0; c < chunks; ++c) {
      const __m512i v = _mm512_loadu_si512(wg + c * 64);
      const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      const int64_t k = g * w.group + c * 8;
      for (int t = 0; t < T; ++t) {
        const uint8_t* xr = x.q.data() + (r0 + t) * K + k;
        int32_t first, second;
        std::memcpy(&first, xr, 4);
        std::memcpy(&second, xr + 4, 4);
        d[t] = _mm512_dpbusd_epi32(d[t], _mm512_set1_epi32(first), lo);
        d[t] = _mm512_dpbusd_epi32(d[t], _mm512_set1_epi32(second), hi);
      }
    }
    const auto* sp = reinterpret_cast<const __m256i*>(w.scales + (b * G + g) * 16);
    const auto* mp = reinterpret_cast<const __m256i*>(w.mins + (b * G + g) * 16);
    const __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256(sp)), m = _mm512_cvtph_ps(_mm256_loadu_si256(mp));
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(d[t]), acc[t]);
      acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(x.sums[(r0 + t) * G + g]), acc[t]);
    }
  }
  const __m512 c = _mm512_loadu_ps(w.csum + b * 16);
  const __m512 bias = w.bias ? _mm512_loadu_ps(w.bias + b * 16) : _mm512_setzero_ps();
  for (int t = 0; t < T; ++t) {
    const int64_t r = r0 + t;
    const __m512 y = _mm512_mul_ps(_mm512_set1_ps(x.scale[r]), _mm512_fnmadd_ps(_mm512_set1_ps(x.zero[r]), c, acc[t]));
    _mm512_storeu_ps(out + r * w.N + b * 16, _mm512_add_ps(y, bias));
  }
}
constexpr const char* kIsa = "avx512-vnni";
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// Eight u8 inputs XR by one half-block's nibbles (LO: inputs 0-3, HI: 4-7 of each output): int16
// sums of pairs, each output's two in its two int16 lanes (its four bytes).
inline __m256i nibble_pairs(const uint8_t* xr, __m256i lo, __m256i hi) {
  int32_t first, second;
  std::memcpy(&first, xr, 4);
  std::memcpy(&second, xr + 4, 4);
  return _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(first), lo),
                          _mm256_maddubs_epi16(_mm256_set1_epi32(second), hi));
}

template <int T>
void block(const Rows& x, const Weights& w, int64_t b, int64_t r0, float* out) {
  const int64_t K = w.K, G = K / w.group, chunks = w.group / 8;
  const uint8_t* wb = w.packed + b * K * 8;
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[T][2];
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256i d[T][2];
    for (int t = 0; t < T; ++t) d[t][0] = d[t][1] = _mm256_setzero_si256();
    const uint8_t* wg = wb + g * chunks * 64;
    // Two blocks of eight inputs at a time: their int16 pair sums added stay below 2^15 (4 * 255 *
    // 15 * 2), so one `vpmaddwd` widens both. A group of eight inputs alone takes the second branch.
    for (int64_t c = 0; c < chunks; c += 2) {
      const bool two = c + 1 < chunks;
      const int64_t k = g * w.group + c * 8;
      for (int h = 0; h < 2; ++h) {  // outputs 8h .. 8h + 7
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + c * 64 + h * 32));
        const __m256i lo0 = _mm256_and_si256(v0, low), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low);
        if (two) {
          const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + c * 64 + 64 + h * 32));
          const __m256i lo1 = _mm256_and_si256(v1, low), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low);
          for (int t = 0; t < T; ++t) {
            const uint8_t* xr = x.q.data() + (r0 + t) * K + k;
            const __m256i pairs = _mm256_add_epi16(nibble_pairs(xr, lo0, hi0), nibble_pairs(xr + 8, lo1, hi1));
            d[t][h] = _mm256_add_epi32(d[t][h], _mm256_madd_epi16(pairs, ones));
          }
        } else {
          for (int t = 0; t < T; ++t) {
            const uint8_t* xr = x.q.data() + (r0 + t) * K + k;
            d[t][h] = _mm256_add_epi32(d[t][h], _mm256_madd_epi16(nibble_pairs(xr, lo0, hi0), ones));
          }
        }
      }
    }
    for (int h = 0; h < 2; ++h) {
      const auto* sp = reinterpret_cast<const __m128i*>(w.scales + (b * G + g) * 16 + h * 8);
      const auto* mp = reinterpret_cast<const __m128i*>(w.mins + (b * G + g) * 16 + h * 8);
      const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128(sp)), m = _mm256_cvtph_ps(_mm_loadu_si128(mp));
      for (int t = 0; t < T; ++t) {
        acc[t][h] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(d[t][h]), acc[t][h]);
        acc[t][h] = _mm256_fmadd_ps(m, _mm256_set1_ps(x.sums[(r0 + t) * G + g]), acc[t][h]);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m256 c = _mm256_loadu_ps(w.csum + b * 16 + h * 8);
    const __m256 bias = w.bias ? _mm256_loadu_ps(w.bias + b * 16 + h * 8) : _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) {
      const int64_t r = r0 + t;
      const __m256 y = _mm256_mul_ps(_mm256_set1_ps(x.scale[r]),
                                     _mm256_fnmadd_ps(_mm256_set1_ps(x.zero[r]), c, acc[t][h]));
      _mm256_storeu_ps(out + r * w.N + b * 16 + h * 8, _mm256_add_ps(y, bias));
    }
  }
}
constexpr const char* kIsa = "avx2";
#else
template <int T>
void block(const Rows& x, const Weights& w, int64_t b, int64_t r0, float* out) {
  const int64_t K = w.K, G = K / w.group, chunks = w.group / 8;
  const uint8_t* wb = w.packed + b * K * 8;
  for (int t = 0; t < T; ++t) {
    const int64_t r = r0 + t;
    const uint8_t* xr = x.q.data() + r * K;
    for (int n = 0; n < 16; ++n) {
      float acc = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        int32_t d = 0;
        for (int64_t c = 0; c < chunks; ++c) {
          const uint8_t* bytes = wb + (g * chunks + c) * 64 + n * 4;
          const int64_t k = g * w.group + c * 8;
          for (int j = 0; j < 4; ++j) {
            d += static_cast<int32_t>(xr[k + j]) * (bytes[j] & 0x0F);
            d += static_cast<int32_t>(xr[k + 4 + j]) * (bytes[j] >> 4);
          }
        }
        const float s = static_cast<float>(w.scales[(b * G + g) * 16 + n]);
        const float m = static_cast<float>(w.mins[(b * G + g) * 16 + n]);
        acc = std::fma(s, static_cast<float>(d), acc);
        acc = std::fma(m, x.sums[r * G + g], acc);
      }
      const float y = x.scale[r] * std::fma(-x.zero[r], w.csum[b * 16 + n], acc);
      out[r * w.N + b * 16 + n] = y + (w.bias ? w.bias[b * 16 + n] : 0.f);
    }
  }
}
constexpr const char* kIsa = "scalar";
#endif

std::string int4_isa() { return kIsa; }

void tile(const Rows& x, const Weights& w, int64_t b, int64_t r0, int64_t rows, float* out) {
  switch (rows) {
    case 1: block<1>(x, w, b, r0, out); break;
    case 2: block<2>(x, w, b, r0, out); break;
    case 3: block<3>(x, w, b, r0, out); break;
    case 4: block<4>(x, w, b, r0, out); break;
#ifdef __AVX512VNNI__
    case 5: block<5>(x, w, b, r0, out); break;
    case 6: block<6>(x, w, b, r0, out); break;
    case 7: block<7>(x, w, b, r0, out); break;
    default: block<8>(x, w, b, r0, out); break;
#else
    default: block<4>(x, w, b, r0, out); break;
#endif
  }
  static_assert(kTile == 4 || kTile == 8, "tile() dispatches tiles of up to four or eight rows");
}

at::Tensor int4_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                       const at::Tensor& mins, const at::Tensor& csum, const c10::optional<at::Tensor>& bias,
                       int64_t group) {
  const int64_t K = x.size(-1), N = packed.size(0) * 16;
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), "int4_linear: float32 inputs on the CPU");
  TORCH_CHECK(group % 8 == 0 && K % group == 0 && packed.scalar_type() == at::kByte && packed.is_contiguous() &&
                  packed.size(1) * 8 == K && packed.size(2) == 64,
              "int4_linear: weights packed by quant.pack_int4 for ", K, " inputs in groups of ", group);
  TORCH_CHECK(scales.scalar_type() == at::kHalf && mins.scalar_type() == at::kHalf && scales.is_contiguous() &&
                  mins.is_contiguous() && scales.numel() == N / 16 * (K / group) * 16 && mins.sizes() == scales.sizes(),
              "int4_linear: half scales and minimums, (outputs / 16, groups, 16)");
  TORCH_CHECK(csum.scalar_type() == at::kFloat && csum.numel() == N && csum.is_contiguous(),
              "int4_linear: one float32 correction per output");
  const bool has_bias = bias.has_value() && bias->defined() && bias->numel() > 0;
  TORCH_CHECK(!has_bias || (bias->scalar_type() == at::kFloat && bias->numel() == N && bias->is_contiguous()),
              "int4_linear: a float32 bias per output");
  const int64_t M = K ? x.numel() / K : 0;
  const auto xs = x.reshape({M, K}).contiguous();
  const Rows rows = quantize_rows(xs.data_ptr<float>(), M, K, group);
  auto out = at::empty({M, N}, x.options());
  const Weights w{packed.data_ptr<uint8_t>(), scales.data_ptr<at::Half>(), mins.data_ptr<at::Half>(),
                  csum.data_ptr<float>(), has_bias ? bias->data_ptr<float>() : nullptr, N, K, group};
  float* o = out.data_ptr<float>();
  // Each thread takes whole blocks of outputs and runs every row tile over them, so a block's
  // weights come from memory once and from the caches for the tiles after the first.
  at::parallel_for(0, N / 16, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t r0 = 0; r0 < M; r0 += kTile) tile(rows, w, b, r0, std::min(kTile, M - r0), o);
  });
  auto shape = x.sizes().vec();
  shape.back() = N;
  return out.view(shape);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ttsopt_t3, m) {
  m.def("int4_linear(Tensor x, Tensor packed, Tensor scales, Tensor mins, Tensor csum, Tensor? bias, int group) "
        "-> Tensor");
  // Which kernel this build holds ("avx512-vnni", "avx2" or "scalar"): `quant.int4_here` reads it.
  m.def("int4_isa() -> str", int4_isa);
}

TORCH_LIBRARY_IMPL(ttsopt_t3, CPU, m) { m.impl("int4_linear", int4_linear); }
