"""T3's decode-step products alone, in the int8 kernels torch offers on a CPU: how fast each reads
one step's weights. The bench's T3 floor assumes the step reads its bytes at the probe's rate;
this shows what the int8 products themselves reach, so the gap between floor and step can be
split into products and the rest.

`read (sum)` is no product: the same bytes in buffers of the same sizes, summed, the rate a plain
read reaches in this run; each product's rate is also printed as a share of it.

Each layer's four products (q/k/v joined, o, gate/up joined, down; shapes from T3's Llama config)
get weights of their own for every one of the 30 layers, as in the model, so a sweep reads from
memory rather than the caches. Activations are the step's: two rows (the CFG pair).

On a CPU with AVX-512 VNNI a plain loop of its dot products joins them (`dynamic int8 (VNNI loop)`).
`cpu-int4-t3`'s products join them too, for the bytes int4 saves: ttsopt's native int4 kernel (the
one its build holds, `int4_isa`; under `scripts/as-avx2.sh` the AVX2 one) and torch's
(`_weight_int4pack_mm_for_cpu`), both with groups of 64 inputs.

    .venv/bin/python scripts/int8-products.py [--rounds 5] [--threads 1 2] [--rows 2] [--kernels NAME ...]
"""
import argparse
import warnings

import torch
import torch._inductor.config
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

from ttsopt.measure import roofline, rounds
from ttsopt.measure.env import cpu_flags, cpu_model, cpu_units
from ttsopt.measure.timing import Stopwatch

ROWS = 2
READ = "read (sum)"


def shapes(config: dict) -> dict[str, tuple[int, int]]:
    d, ff = config["hidden_size"], config["intermediate_size"]
    return {"qkv": (3 * d, d), "o": (d, d), "gate_up": (2 * ff, d), "down": (d, ff)}


def dynamic_int8(n: int, k: int):
    """fbgemm's dynamic int8 product with a scale per output channel: what cpu-int8-t3 runs."""
    lin = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False))
    spec = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    packed = torch.ao.quantization.quantize_dynamic(lin, qconfig_spec=spec, dtype=torch.qint8)[0]
    w, x = packed._packed_params._packed_params, torch.randn(ROWS, 1, k)
    return lambda: torch.ops.quantized.linear_dynamic(x, w, True)


def weight_only_int8(n: int, k: int):
    """int8 weights, bfloat16 activations and scales (`_weight_int8pack_mm`, torchao's CPU path)."""
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    x, scales = torch.randn(ROWS, k, dtype=torch.bfloat16), torch.rand(n, dtype=torch.bfloat16)
    return lambda: torch._weight_int8pack_mm(x, w, scales)


def weight_only_int8_f32(n: int, k: int):
    """`_weight_int8pack_mm` with float32 activations and scales: no bfloat16 casts on a CPU
    without bfloat16 arithmetic, and no activation quantization (the weights' error only)."""
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    x, scales = torch.randn(ROWS, k), torch.rand(n)
    return lambda: torch._weight_int8pack_mm(x, w, scales)


def dynamic_int8_onednn(n: int, k: int):
    """The same dynamic int8 product with its weights packed by oneDNN instead of fbgemm (the
    packed object carries its engine, so only the packing switches it)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = "onednn"
    try:
        w = torch.quantize_per_channel(torch.randn(n, k) / 10, torch.rand(n) / 100 + 1e-3,
                                       torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(w, None)
    finally:
        torch.backends.quantized.engine = before
    x = torch.randn(ROWS, 1, k)
    return lambda: torch.ops.quantized.linear_dynamic(x, packed, False)


def int_mm(n: int, k: int):
    """int8 by int8 to int32 (`torch._int_mm`), activations already quantized."""
    w, x = torch.randint(-127, 128, (k, n), dtype=torch.int8), torch.randint(-127, 128, (ROWS, k), dtype=torch.int8)
    return lambda: torch._int_mm(x, w)


def _dequantize_reduce(x, w, scales):
    return (x[:, None, :] * w[None].to(torch.float32)).sum(-1) * scales


_COMPILED = None


def compiled_int8(n: int, k: int):
    """int8 weights dequantized inside a reduction that `torch.compile` (inductor's C++) fuses into one loop."""
    global _COMPILED
    _COMPILED = _COMPILED or torch.compile(_dequantize_reduce, dynamic=False)
    w, x, scales = torch.randint(-127, 128, (n, k), dtype=torch.int8), torch.randn(ROWS, k), torch.rand(n)
    return lambda: _COMPILED(x, w, scales)


def _int4(n: int, k: int, here):
    from ttsopt.engine import quant
    layer = quant.Int4Linear(torch.nn.Linear(k, n, bias=False), quant.INT4_GROUP, here)
    x = torch.randn(ROWS, 1, k)
    return lambda: layer(x)


def int4_ttsopt(n: int, k: int):
    """ttsopt's int4 kernel (`quant.Int4Linear`'s native path): u8 inputs by int4 weights."""
    return _int4(n, k, None)


def int4_torch(n: int, k: int):
    """torch's int4 kernel (`quant.Int4Linear`'s fallback): bfloat16 inputs by int4 weights."""
    return _int4(n, k, "torch's, for this sweep")


def read_sum(n: int, k: int):
    """No product: an int8 buffer of the weight's size summed as float32, the same bytes in the same
    buffers, read in the same order of calls. The others' rates read against this one say how close
    each comes to the memory's speed in this run, whatever speed the box reads at today; the bench's
    bandwidth probe sums one large tensor, which no step's sweep of many smaller buffers matches."""
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8).view(torch.float32)
    return lambda: w.sum()


def float32(n: int, k: int):
    """The float32 product upstream's step runs (4 bytes a weight)."""
    w, x = torch.randn(n, k), torch.randn(ROWS, 1, k)
    return lambda: torch.nn.functional.linear(x, w)


# A plain loop of AVX-512 VNNI dot products (`vpdpbusd`: four u8 x s8 products summed into each of
# sixteen int32 lanes), for what a product that only streams its int8 weights reaches beside
# fbgemm's. The input rows are quantized by ATen's `quantize_per_tensor_dynamic` as fbgemm's
# dynamic product quantizes them (one scale and zero point over all of them, the range halved as
# `dynamic int8 (fbgemm)` asks), the weights laid out sixteen outputs by four inputs per 64 bytes,
# and the output dequantized with a scale per output channel: fbgemm's arithmetic. Its int32 sums
# are fbgemm's, but for an input that ATen's quantizing and fbgemm's own round a step apart now and
# then (one of a few hundred checks here differed, by 6e-4 relative).
VNNI_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

torch::Tensor vnni_linear(torch::Tensor x, torch::Tensor w, torch::Tensor scales, torch::Tensor sums) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0) * 16, K4 = K / 4;
  TORCH_CHECK(M == 2 && K % 8 == 0, "vnni_linear: two rows, inputs a multiple of 8");
  const auto xq = at::quantize_per_tensor_dynamic(x, at::kQUInt8, /*reduce_range=*/true);
  const float scale = static_cast<float>(xq.q_scale());
  const int32_t zero = static_cast<int32_t>(xq.q_zero_point());
  auto out = torch::empty({M, N});
  const int8_t* ws = w.data_ptr<int8_t>();
  const int32_t* x0 = reinterpret_cast<const int32_t*>(xq.data_ptr<c10::quint8>());  // four inputs per int32
  const int32_t* x1 = x0 + K4;
  const float* sc = scales.data_ptr<float>();
  const int32_t* su = sums.data_ptr<int32_t>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, N / 16, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int8_t* wb = ws + b * K * 16;
      __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
      __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
      for (int64_t k = 0; k < K4; k += 2) {
        _mm_prefetch(reinterpret_cast<const char*>(wb + k * 64 + 512), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(wb + k * 64 + 576), _MM_HINT_T0);
        const __m512i v0 = _mm512_loadu_si512(wb + k * 64), v1 = _mm512_loadu_si512(wb + k * 64 + 64);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(x0[k]), v0);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(x1[k]), v0);
        c0 = _mm512_dpbusd_epi32(c0, _mm512_set1_epi32(x0[k + 1]), v1);
        c1 = _mm512_dpbusd_epi32(c1, _mm512_set1_epi32(x1[k + 1]), v1);
      }
      const __m512i correction = _mm512_mullo_epi32(_mm512_set1_epi32(zero), _mm512_loadu_si512(su + b * 16));
      const __m512 s = _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_loadu_ps(sc + b * 16));
      const __m512i r0 = _mm512_sub_epi32(_mm512_add_epi32(a0, c0), correction);
      const __m512i r1 = _mm512_sub_epi32(_mm512_add_epi32(a1, c1), correction);
      _mm512_storeu_ps(o + b * 16, _mm512_mul_ps(s, _mm512_cvtepi32_ps(r0)));
      _mm512_storeu_ps(o + N + b * 16, _mm512_mul_ps(s, _mm512_cvtepi32_ps(r1)));
    }
  });
  return out;
}
"""
_VNNI = None


def vnni_loop(n: int, k: int):
    """int8 weights with a scale per output channel through a plain VNNI loop (`VNNI_SOURCE`),
    built for this CPU on first use; checked once against fbgemm's product of the same weights."""
    global _VNNI
    if _VNNI is None:
        from torch.utils.cpp_extension import load_inline
        _VNNI = load_inline("ttsopt_int8_products_vnni", [VNNI_SOURCE], functions=["vnni_linear"],
                            extra_cflags=["-O3", "-march=native", "-fopenmp"])
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scales, x = torch.rand(n) / 100 + 1e-3, torch.randn(ROWS, k)
    laid = w.reshape(n // 16, 16, k // 4, 4).permute(0, 2, 1, 3).contiguous()
    sums = w.to(torch.int32).sum(1, dtype=torch.int32)
    q = torch._make_per_channel_quantized_tensor(w, scales.double(), torch.zeros(n, dtype=torch.long), 0)
    want = torch.ops.quantized.linear_dynamic(x, torch.ops.quantized.linear_prepack(q, None), True)
    error = ((_VNNI.vnni_linear(x, laid, scales, sums) - want).norm() / want.norm()).item()
    if error > 5e-3:  # an input rounded a step apart moves it by ~1e-3; a wrong layout or sum, by ~1
        raise SystemExit(f"the VNNI loop's {n} x {k} product is {error:.2e} from fbgemm's of the same weights")
    return lambda: _VNNI.vnni_linear(x, laid, scales, sums)


class _WeightOnlySweep(torch.nn.Module):
    """Every product of a sweep as `_weight_int8pack_mm` on int8 buffers of its own, one module."""

    def __init__(self, products: list[tuple[int, int]]):
        super().__init__()
        self.ks = [k for _, k in products]
        for i, (n, k) in enumerate(products):
            self.register_buffer(f"w{i}", torch.randint(-127, 128, (n, k), dtype=torch.int8))
            self.register_buffer(f"s{i}", torch.rand(n, dtype=torch.bfloat16))

    def forward(self, inputs: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        return [torch._weight_int8pack_mm(inputs[k], getattr(self, f"w{i}"), getattr(self, f"s{i}"))
                for i, k in enumerate(self.ks)]


def inductor_weight_only_int8(products: list[tuple[int, int]]):
    """The whole sweep compiled at once with frozen weights and max-autotune, so inductor may put
    each product in its C++ GEMM template with a weight-only int8 micro-kernel for bfloat16
    activations (torchao's CPU int8 path under compile; the template wants constant weights, hence
    one graph of all of them). Compiled here, before the rounds, so that its settings stay its own."""
    sweep = _WeightOnlySweep(products).eval()
    inputs = {k: torch.randn(ROWS, k, dtype=torch.bfloat16) for k in sweep.ks}
    compiled = torch.compile(sweep, mode="max-autotune-no-cudagraphs")
    # Frozen weights are what the template wants; CPP alone keeps autotuning from falling back to
    # `_weight_int8pack_mm` itself. Patched for this compile only: no other kernel sees them.
    with torch.no_grad(), torch._inductor.config.patch(freezing=True, max_autotune_gemm_backends="CPP"):
        compiled(inputs)

    def call():
        with torch.no_grad():
            return compiled(inputs)
    return [call]


# Kernels whose sweep is built whole (one call for all products) rather than product by product.
SWEEPS = {"weight-only int8 (bf16), inductor template": (inductor_weight_only_int8, 1)}

KERNELS = {"dynamic int8 (fbgemm)": (dynamic_int8, 1), "dynamic int8 (onednn)": (dynamic_int8_onednn, 1),
           "weight-only int8 (bf16)": (weight_only_int8, 1), "weight-only int8 (f32)": (weight_only_int8_f32, 1),
           "_int_mm int8": (int_mm, 1), "compiled dequantize-reduce": (compiled_int8, 1), "float32": (float32, 4),
           READ: (read_sum, 1)}
if "avx512_vnni" in cpu_flags():  # the loop is written in its instructions
    KERNELS["dynamic int8 (VNNI loop)"] = (vnni_loop, 1)
INT4_BYTES = 0.5 + 4 / 64  # a nibble per weight, a half-precision scale and minimum per group of 64
KERNELS["int4 (ttsopt)"] = (int4_ttsopt, INT4_BYTES)
KERNELS["int4 (torch)"] = (int4_torch, INT4_BYTES)


def sweep_ms(calls: list) -> float:
    clock = Stopwatch(torch.device("cpu"))
    for call in calls:
        call()
    return clock.elapsed() * 1e3


def main() -> None:
    global ROWS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="Llama_520M", help="a key of chatterbox's LLAMA_CONFIGS")
    p.add_argument("--rows", type=int, default=ROWS, help="activation rows (2: the CFG pair; 1: no CFG)")
    p.add_argument("--kernels", nargs="+", choices=[*KERNELS, *SWEEPS], default=[*KERNELS, *SWEEPS], metavar="NAME",
                   help=f"which kernels to sweep (default all: {'; '.join([*KERNELS, *SWEEPS])})")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    ROWS = args.rows
    if ROWS != 2 and "dynamic int8 (VNNI loop)" in args.kernels:
        raise SystemExit("the VNNI loop is written for two rows: leave it out of --kernels with --rows 1")
    if "int4 (ttsopt)" in args.kernels:
        from ttsopt.engine import quant
        from ttsopt.engine.t3 import native
        if quant.int4_here():
            raise SystemExit(f"int4 (ttsopt) cannot run here: {quant.int4_here()}")
        print(f"int4 (ttsopt) is the native build's {native.layer().int4_isa} kernel", flush=True)
    config = LLAMA_CONFIGS[args.model]
    layers, per_layer = config["num_hidden_layers"], shapes(config)
    weights = sum(n * k for n, k in per_layer.values()) * layers
    sweeps = {name: [make(n, k) for _ in range(layers) for n, k in per_layer.values()]
              for name, (make, _) in KERNELS.items() if name in args.kernels}
    products = [shape for _ in range(layers) for shape in per_layer.values()]
    sweeps |= {name: make(products) for name, (make, _) in SWEEPS.items() if name in args.kernels}
    subjects = {f"{name}, {t} thread(s)": (lambda calls=calls, t=t: (torch.set_num_threads(t), sweep_ms(calls))[1])
                for t in args.threads for name, calls in sweeps.items()}
    times = rounds.interleaved(subjects, args.rounds, say=lambda line: print(line, flush=True), unit="ms")
    print(f"\nT3's products for one decode step ({layers} layers x {len(per_layer)} products, {ROWS} rows, "
          f"{weights / 1e6:.0f} M weights), {cpu_model()} ({cpu_units()}); {rounds.kept_rounds(args.rounds)}")
    rates = {}
    for label, readings in times.items():
        name = label.rsplit(",", 1)[0]
        mb = weights * {**KERNELS, **SWEEPS}[name][1] / 1e6
        median = sorted(rounds.steady(readings))[len(rounds.steady(readings)) // 2]
        rates[label] = mb / median
        print(f"  {label:42s} {rounds.summary(readings)} ms   {mb:.0f} MB of weights -> {rates[label]:.1f} GB/s")
    if READ in args.kernels:
        probe = roofline.read_bandwidths("cpu")  # at the thread count the last round left
        print(f"  the bench's bandwidth probe (sums over one 256 MiB tensor, {torch.get_num_threads()} thread(s)) "
              f"after the rounds: {min(probe) / 1e9:.1f}-{max(probe) / 1e9:.1f} GB/s")
    for t in args.threads if READ in args.kernels else ():
        read = rates[f"{READ}, {t} thread(s)"]
        print(f"  against the plain read at {t} thread(s), {read:.1f} GB/s: " + ", ".join(
            f"{label.rsplit(',', 1)[0]} {rate / read:.0%}" for label, rate in rates.items()
            if label.endswith(f" {t} thread(s)") and not label.startswith(READ)))


if __name__ == "__main__":
    main()
