// One Llama decoder layer of T3's CPU decode step as one native op, for one new token, and one
// GPT-2 block of Turbo's likewise (at the end), each with its products in int8 or in int4
// (`int4_linear.cpp`).
//
// Why: the TorchScript layer (scripted.py) runs some sixty ATen ops per layer on two rows of
// 1024 floats, and on a 2-core CPU each op's fixed cost (interpreter, dispatch, TensorIterator
// set-up) adds up to a sizeable share of the step (`ttsopt bench`, "where it went"). Here the
// norms and the rotary embedding with the cache write are plain loops over the rows, the
// attention over the cache is a loop of its own (`decode_attention`, below), and the layer calls
// ATen only for the four int8 products (quantized::linear_dynamic, as the TorchScript layer
// does), the SiLU and the two residual adds. It computes what `scripted.layer_int8_joined`
// computes, in float32, with its sums in another order (tests bound the difference).
//
// The cache may hold float32 or half precision (`half-kv`): a decode step reads every cached key
// and value, so half the bytes there is half that part of the step's reading. Half caches are
// written rounded to the nearest half and widened back to float32 as they are read (F16C's
// conversions, which every AVX2 CPU has); the arithmetic stays float32.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

using Packed = c10::intrusive_ptr<LinearPackedParamsBase>;

// LlamaRMSNorm.forward on float32 rows: weight * (x * rsqrt(mean(x^2) + eps)).
at::Tensor rms(const at::Tensor& rows_in, const at::Tensor& weight_in, double eps) {
  TORCH_CHECK(weight_in.numel() == rows_in.size(-1), "llama_layer_int8: a norm weight as wide as the rows");
  const auto x = rows_in.contiguous();
  const auto weight = weight_in.contiguous();
  const int64_t D = x.size(-1), rows = x.numel() / D;
  auto out = at::empty_like(x);
  const float* xs = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* os = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xs + r * D;
    float squares = 0.f;
#pragma omp simd reduction(+ : squares)
    for (int64_t i = 0; i < D; ++i) squares += xr[i] * xr[i];
    const float inv = 1.f / std::sqrt(squares / static_cast<float>(D) + static_cast<float>(eps));
    float* o = os + r * D;
#pragma omp simd
    for (int64_t i = 0; i < D; ++i) o[i] = w[i] * (xr[i] * inv);
  }
  return out;
}

// The MLP's silu(gate) * up, from the joined gate/up product's output (gate first, then up):
// ATen's vectorized SiLU, where a plain loop would call a scalar exp 8192 times a layer.
at::Tensor silu_mul(const at::Tensor& gate_up) {
  const int64_t width = gate_up.size(-1) / 2;
  return at::silu(gate_up.narrow(-1, 0, width)).mul_(gate_up.narrow(-1, width, width));
}

// One new token's joined q/k/v projection (B, 1, 3 * width) split into heads, with the rotary
// embedding (upstream's (q * cos) + (rotate_half(q) * sin)) where COS and SIN are given (Llama)
// and none where they are undefined (GPT-2); the keys and values are written into the caches at
// slot START, and the queries returned as (B, H, 1, head_dim).
// The caches' element type: float32 or half, both caches alike.
bool half_cache(const at::Tensor& k_cache, const at::Tensor& v_cache) {
  const auto kind = k_cache.scalar_type();
  TORCH_CHECK(v_cache.scalar_type() == kind && (kind == at::kFloat || kind == at::kHalf),
              "native layer: float32 or half caches, keys and values alike (got ", k_cache.scalar_type(), " and ",
              v_cache.scalar_type(), ")");
  return kind == at::kHalf;
}

template <typename C>
at::Tensor split_and_cache_as(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                              const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start, int64_t head_dim) {
  const int64_t B = qkv.size(0), width = qkv.size(2) / 3, H = width / head_dim, half = head_dim / 2;
  TORCH_CHECK(qkv.is_contiguous() && k_cache.stride(3) == 1 && v_cache.stride(3) == 1,
              "native layer: contiguous projections and caches with contiguous head dims");
  TORCH_CHECK(start >= 0 && start < k_cache.size(2), "native layer: slot ", start, " is outside the cache");
  auto q_out = at::empty({B, H, 1, head_dim}, qkv.options());
  const float* src = qkv.data_ptr<float>();
  const bool rotary = cos.defined();
  const float* c = rotary ? cos.data_ptr<float>() : nullptr;
  const float* s = rotary ? sin.data_ptr<float>() : nullptr;
  float* qo = q_out.data_ptr<float>();
  C* kc = k_cache.data_ptr<C>();
  C* vc = v_cache.data_ptr<C>();
  for (int64_t b = 0; b < B; ++b) {
    const float* row = src + b * 3 * width;
    for (int64_t h = 0; h < H; ++h) {
      const float* q = row + h * head_dim;
      const float* k = row + width + h * head_dim;
      const float* v = row + 2 * width + h * head_dim;
      float* qd = qo + (b * H + h) * head_dim;
      C* kd = kc + b * k_cache.stride(0) + h * k_cache.stride(1) + start * k_cache.stride(2);
      C* vd = vc + b * v_cache.stride(0) + h * v_cache.stride(1) + start * v_cache.stride(2);
      if (!rotary) {
        std::copy(q, q + head_dim, qd);
        std::copy(k, k + head_dim, kd);
        std::copy(v, v + head_dim, vd);
        continue;
      }
      for (int64_t i = 0; i < head_dim; ++i) {
        const float q_rot = i < half ? -q[i + half] : q[i - half];
        const float k_rot = i < half ? -k[i + half] : k[i - half];
        const float q_cos = q[i] * c[i], q_sin = q_rot * s[i];
        const float k_cos = k[i] * c[i], k_sin = k_rot * s[i];
        qd[i] = q_cos + q_sin;
        kd[i] = k_cos + k_sin;
        vd[i] = v[i];
      }
    }
  }
  return q_out;
}

at::Tensor split_and_cache(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                           const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start, int64_t head_dim) {
  return half_cache(k_cache, v_cache)
             ? split_and_cache_as<at::Half>(qkv, cos, sin, k_cache, v_cache, start, head_dim)
             : split_and_cache_as<float>(qkv, cos, sin, k_cache, v_cache, start, head_dim);
}

// A query row Q against a cached row K of D values, and a cached row V added W times into ACC: plain
// loops the compiler vectorizes for float32 caches, F16C's widening for half ones.
inline float dot(const float* q, const float* k, int64_t D) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < D; ++d) sum += q[d] * k[d];
  return sum;
}

inline void add_scaled(float w, const float* v, float* acc, int64_t D) {
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) acc[d] += w * v[d];
}

#if defined(__AVX512F__)
inline __m512 widen16(const at::Half* h) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
}

inline float dot(const float* q, const at::Half* k, int64_t D) {
  __m512 acc = _mm512_setzero_ps();
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), widen16(k + d), acc);
  float sum = _mm512_reduce_add_ps(acc);
  for (; d < D; ++d) sum += q[d] * static_cast<float>(k[d]);
  return sum;
}

inline void add_scaled(float w, const at::Half* v, float* acc, int64_t D) {
  const __m512 ws = _mm512_set1_ps(w);
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) _mm512_storeu_ps(acc + d, _mm512_fmadd_ps(ws, widen16(v + d), _mm512_loadu_ps(acc + d)));
  for (; d < D; ++d) acc[d] += w * static_cast<float>(v[d]);
}
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
inline __m256 widen8(const at::Half* h) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

inline float dot(const float* q, const at::Half* k, int64_t D) {
  __m256 acc = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), widen8(k + d), acc);
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  float sum = _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
  for (; d < D; ++d) sum += q[d] * static_cast<float>(k[d]);
  return sum;
}

inline void add_scaled(float w, const at::Half* v, float* acc, int64_t D) {
  const __m256 ws = _mm256_set1_ps(w);
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(ws, widen8(v + d), _mm256_loadu_ps(acc + d)));
  for (; d < D; ++d) acc[d] += w * static_cast<float>(v[d]);
}
#else
inline float dot(const float* q, const at::Half* k, int64_t D) {
  float sum = 0.f;
  for (int64_t d = 0; d < D; ++d) sum += q[d] * static_cast<float>(k[d]);
  return sum;
}

inline void add_scaled(float w, const at::Half* v, float* acc, int64_t D) {
  for (int64_t d = 0; d < D; ++d) acc[d] += w * static_cast<float>(v[d]);
}
#endif

// Attention of one new token over the first LENGTH cache slots, for every row and head: one pass
// over the keys for the scores, one over the values for their weighted sum. torch's fused CPU
// kernel blocks its work for many queries; with one it reads the cache well below the memory's
// speed, and in a decode step the cache is all it reads. The sums run in another order than that
// kernel's, so the output differs from it by float32 rounding (tests bound it).
// P[j] = exp(P[j] - TOP) for the N scores of one row and head, returning their sum: vectorized,
// where a scalar exp per cached slot made a sizeable share of the attention. Cephes' expf: x = n ln2
// + r with |r| <= ln2 / 2, e^r by its degree-7 polynomial, times 2^n; within a few float32 ulps of
// std::exp (tests bound the attention against torch's). Every argument is at most 0 (TOP is the
// largest score); those below -87 are taken as -87, whose exponential no sum of floats can see.
#if defined(__AVX512F__)
inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 e = _mm512_set1_ps(1.9875691500e-4f);
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.3981999507e-3f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(8.3334519073e-3f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(4.1665795894e-2f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.6666665459e-1f));
  e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(5.0000001201e-1f));
  e = _mm512_fmadd_ps(e, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(e, n);
}

inline float exp_shifted(float* p, int64_t n, float top) {
  const __m512 shift = _mm512_set1_ps(top);
  __m512 sums = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(p + j), shift));
    _mm512_storeu_ps(p + j, e);
    sums = _mm512_add_ps(sums, e);
  }
  if (j < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + j), shift));
    _mm512_mask_storeu_ps(p + j, tail, e);
    sums = _mm512_add_ps(sums, _mm512_maskz_mov_ps(tail, e));
  }
  return _mm512_reduce_add_ps(sums);
}
#elif defined(__AVX2__) && defined(__FMA__)
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 e = _mm256_set1_ps(1.9875691500e-4f);
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.3981999507e-3f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(8.3334519073e-3f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(4.1665795894e-2f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.6666665459e-1f));
  e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(5.0000001201e-1f));
  e = _mm256_fmadd_ps(e, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n from its exponent bits: n >= -126 here, so the result is a normal float.
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

inline float exp_shifted(float* p, int64_t n, float top) {
  const __m256 shift = _mm256_set1_ps(top);
  __m256 sums = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + j), shift));
    _mm256_storeu_ps(p + j, e);
    sums = _mm256_add_ps(sums, e);
  }
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(sums), _mm256_extractf128_ps(sums, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  float total = _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
  for (; j < n; ++j) {
    p[j] = std::exp(p[j] - top);
    total += p[j];
  }
  return total;
}
#else
inline float exp_shifted(float* p, int64_t n, float top) {
  float total = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(p[j] - top);
    total += p[j];
  }
  return total;
}
#endif

template <typename C>
at::Tensor decode_attention_as(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                               int64_t length, double scale) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3);
  TORCH_CHECK(q.is_contiguous() && q.size(2) == 1 && k_cache.stride(3) == 1 && v_cache.stride(3) == 1 && D <= 256,
              "decode_attention: one query per row and head, contiguous head dims of at most 256");
  TORCH_CHECK(length >= 1 && length <= k_cache.size(2), "decode_attention: ", length, " slots in a cache of ",
              k_cache.size(2));
  TORCH_CHECK(k_cache.size(0) == B && k_cache.size(1) == H && v_cache.sizes() == k_cache.sizes() &&
                  k_cache.size(3) == D,
              "decode_attention: caches of (rows, heads, slots, head dim) matching the queries' (no grouped heads)");
  auto out = at::empty({B, H, 1, D}, q.options());
  const float* qs = q.data_ptr<float>();
  const C* ks = k_cache.data_ptr<C>();
  const C* vs = v_cache.data_ptr<C>();
  float* os = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(length);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* qr = qs + bh * D;
      const C* k = ks + b * k_cache.stride(0) + h * k_cache.stride(1);
      const C* v = vs + b * v_cache.stride(0) + h * v_cache.stride(1);
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < length; ++j) {
        p[j] = dot(qr, k + j * k_cache.stride(2), D) * sc;
        top = std::max(top, p[j]);
      }
      const float total = exp_shifted(p.data(), length, top);
      float acc[256] = {0.f};
      for (int64_t j = 0; j < length; ++j) add_scaled(p[j], v + j * v_cache.stride(2), acc, D);
      float* o = os + bh * D;
      for (int64_t d = 0; d < D; ++d) o[d] = acc[d] / total;
    }
  });
  return out;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t length,
                            double scale) {
  return half_cache(k_cache, v_cache) ? decode_attention_as<at::Half>(q, k_cache, v_cache, length, scale)
                                      : decode_attention_as<float>(q, k_cache, v_cache, length, scale);
}

// The int8 product and the attention go through the dispatcher, as calls from Python would, so
// torch.profiler sees them apart from the layer's own loops (`ttsopt bench`, "where it went").
at::Tensor product(const at::Tensor& x, const Packed& w, bool reduce_range) {
  static const auto op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("quantized::linear_dynamic", "")
                              .typed<at::Tensor(at::Tensor, const Packed&, bool)>();
  return op.call(x, w, reduce_range);
}

at::Tensor attend(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t length,
                  double scale) {
  static const auto op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("ttsopt_t3::decode_attention", "")
                              .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                                                double)>();
  return op.call(q, k_cache, v_cache, length, scale);
}

// One Llama layer for one new token; PROJECT(x, i) runs its i-th product (joined q/k/v, o,
// joined gate/up, down).
template <typename Project>
at::Tensor llama_layer(const at::Tensor& h, const at::Tensor& norm1, double eps1, const at::Tensor& norm2, double eps2,
                       const Project& project, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& k_cache,
                       const at::Tensor& v_cache, int64_t start, double scale, int64_t head_dim) {
  TORCH_CHECK(h.dim() == 3 && h.size(1) == 1 && h.scalar_type() == at::kFloat && h.device().is_cpu(),
              "llama_layer: one new token per row, float32, on the CPU (B, 1, D)");
  TORCH_CHECK(cos.numel() == head_dim && sin.numel() == head_dim && cos.is_contiguous() && sin.is_contiguous(),
              "llama_layer: one position's rotary tables, shared by every row");
  const int64_t B = h.size(0), D = h.size(2);
  auto x = rms(h, norm1, eps1);
  auto q = split_and_cache(project(x, 0), cos, sin, k_cache, v_cache, start, head_dim);
  auto a = attend(q, k_cache, v_cache, start + 1, scale);
  auto h2 = h + project(a.view({B, 1, D}), 1);
  auto gu = project(rms(h2, norm2, eps2), 2);
  return h2 + project(silu_mul(gu), 3);
}

at::Tensor llama_layer_int8(const at::Tensor& h, const at::Tensor& norm1, double eps1, const at::Tensor& norm2,
                            double eps2, const Packed& qkv, const Packed& o, const Packed& gate_up,
                            const Packed& down, bool reduce_range, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start, double scale,
                            int64_t head_dim) {
  const Packed* weights[] = {&qkv, &o, &gate_up, &down};
  auto project = [&](const at::Tensor& x, int i) { return product(x, *weights[i], reduce_range); };
  return llama_layer(h, norm1, eps1, norm2, eps2, project, cos, sin, k_cache, v_cache, start, scale, head_dim);
}

// The int4 product (`int4_linear.cpp`), through the dispatcher as `product` is. PARTS: the
// projection's packed weights, scales, minimums, corrections and bias (empty: none).
at::Tensor int4_product(const at::Tensor& x, at::TensorList parts, int64_t group) {
  static const auto op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("ttsopt_t3::int4_linear", "")
                              .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, const at::Tensor&,
                                                const c10::optional<at::Tensor>&, int64_t)>();
  TORCH_CHECK(parts.size() == 5, "int4 layer: five tensors per projection (packed, scales, mins, csum, bias)");
  const c10::optional<at::Tensor> bias = parts[4].numel() ? c10::optional<at::Tensor>(parts[4]) : c10::nullopt;
  return op.call(x, parts[0], parts[1], parts[2], parts[3], bias, group);
}

at::Tensor llama_layer_int4(const at::Tensor& h, const at::Tensor& norm1, double eps1, const at::Tensor& norm2,
                            double eps2, at::TensorList qkv, at::TensorList o, at::TensorList gate_up,
                            at::TensorList down, int64_t group, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start, double scale,
                            int64_t head_dim) {
  const at::TensorList weights[] = {qkv, o, gate_up, down};
  auto project = [&](const at::Tensor& x, int i) { return int4_product(x, weights[i], group); };
  return llama_layer(h, norm1, eps1, norm2, eps2, project, cos, sin, k_cache, v_cache, start, scale, head_dim);
}

// One GPT-2 block of Turbo's CPU decode step for one new token: what
// `scripted.gpt2_block_int8` computes (LayerNorms, the joined q/k/v projection, attention over
// the cache, the tanh GELU), with the head split and cache write as one loop and the attention
// as above. PROJECT(x, i) runs the block's i-th projection (c_attn, c_proj, c_fc, mlp c_proj).
template <typename Project>
at::Tensor gpt2_block(const at::Tensor& h, const at::Tensor& ln1_w, const at::Tensor& ln1_b, const at::Tensor& ln2_w,
                      const at::Tensor& ln2_b, double eps1, double eps2, const Project& project,
                      const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start, double scale,
                      int64_t head_dim) {
  TORCH_CHECK(h.dim() == 3 && h.size(1) == 1 && h.scalar_type() == at::kFloat && h.device().is_cpu(),
              "gpt2_block: one new token per row, float32, on the CPU (B, 1, D)");
  const int64_t B = h.size(0), D = h.size(2);
  auto x = at::layer_norm(h, {D}, ln1_w, ln1_b, eps1);
  auto q = split_and_cache(project(x, 0), at::Tensor(), at::Tensor(), k_cache, v_cache, start, head_dim);
  auto a = attend(q, k_cache, v_cache, start + 1, scale);
  auto h2 = h + project(a.view({B, 1, D}), 1);
  auto inner = project(at::layer_norm(h2, {D}, ln2_w, ln2_b, eps2), 2);
  return h2 + project(at::gelu(inner, "tanh"), 3);
}

at::Tensor gpt2_block_int8(const at::Tensor& h, const at::Tensor& ln1_w, const at::Tensor& ln1_b,
                           const at::Tensor& ln2_w, const at::Tensor& ln2_b, double eps1, double eps2,
                           const Packed& c_attn, const Packed& c_proj, const Packed& c_fc, const Packed& mlp_proj,
                           bool reduce_range, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start,
                           double scale, int64_t head_dim) {
  const Packed* weights[] = {&c_attn, &c_proj, &c_fc, &mlp_proj};
  auto project = [&](const at::Tensor& x, int i) { return product(x, *weights[i], reduce_range); };
  return gpt2_block(h, ln1_w, ln1_b, ln2_w, ln2_b, eps1, eps2, project, k_cache, v_cache, start, scale, head_dim);
}

at::Tensor gpt2_block_int4(const at::Tensor& h, const at::Tensor& ln1_w, const at::Tensor& ln1_b,
                           const at::Tensor& ln2_w, const at::Tensor& ln2_b, double eps1, double eps2,
                           at::TensorList c_attn, at::TensorList c_proj, at::TensorList c_fc, at::TensorList mlp_proj,
                           int64_t group, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t start,
                           double scale, int64_t head_dim) {
  const at::TensorList weights[] = {c_attn, c_proj, c_fc, mlp_proj};
  auto project = [&](const at::Tensor& x, int i) { return int4_product(x, weights[i], group); };
  return gpt2_block(h, ln1_w, ln1_b, ln2_w, ln2_b, eps1, eps2, project, k_cache, v_cache, start, scale, head_dim);
}

}  // namespace

TORCH_LIBRARY(ttsopt_t3, m) {
  m.def("llama_layer_int8(Tensor h, Tensor norm1, float eps1, Tensor norm2, float eps2, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase qkv, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase o, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase gate_up, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase down, bool reduce_range, "
        "Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, int start, float scale, int head_dim) "
        "-> Tensor");
  m.def("gpt2_block_int8(Tensor h, Tensor ln1_w, Tensor ln1_b, Tensor ln2_w, Tensor ln2_b, float eps1, float eps2, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase c_attn, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase c_proj, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase c_fc, "
        "__torch__.torch.classes.quantized.LinearPackedParamsBase mlp_proj, bool reduce_range, "
        "Tensor(a!) k_cache, Tensor(b!) v_cache, int start, float scale, int head_dim) -> Tensor");
  m.def("llama_layer_int4(Tensor h, Tensor norm1, float eps1, Tensor norm2, float eps2, Tensor[] qkv, Tensor[] o, "
        "Tensor[] gate_up, Tensor[] down, int group, Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, "
        "int start, float scale, int head_dim) -> Tensor");
  m.def("gpt2_block_int4(Tensor h, Tensor ln1_w, Tensor ln1_b, Tensor ln2_w, Tensor ln2_b, float eps1, float eps2, "
        "Tensor[] c_attn, Tensor[] c_proj, Tensor[] c_fc, Tensor[] mlp_proj, int group, "
        "Tensor(a!) k_cache, Tensor(b!) v_cache, int start, float scale, int head_dim) -> Tensor");
  m.def("decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, int length, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(ttsopt_t3, CPU, m) {
  m.impl("llama_layer_int8", llama_layer_int8);
  m.impl("gpt2_block_int8", gpt2_block_int8);
  m.impl("llama_layer_int4", llama_layer_int4);
  m.impl("gpt2_block_int4", gpt2_block_int4);
  m.impl("decode_attention", decode_attention);
}
