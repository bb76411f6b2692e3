"""T3's decode-step products alone, in the int8 kernels torch offers on a CPU: how fast each reads
one step's weights. The bench's T3 floor assumes the step reads its bytes at the probe's rate;
this shows what the int8 products themselves reach, so the gap between floor and step can be
split into products and the rest.

Each layer's four products (q/k/v joined, o, gate/up joined, down; shapes from T3's Llama config)
get weights of their own for every one of the 30 layers, as in the model, so a sweep reads from
memory rather than the caches. Activations are the step's: two rows (the CFG pair).

    .venv/bin/python scripts/int8-products.py [--rounds 5] [--threads 1 2] [--kernels NAME ...]
"""
import argparse
import warnings

import torch
import torch._inductor.config
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units
from ttsopt.measure.timing import Stopwatch

ROWS = 2


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


def float32(n: int, k: int):
    """The float32 product upstream's step runs (4 bytes a weight)."""
    w, x = torch.randn(n, k), torch.randn(ROWS, 1, k)
    return lambda: torch.nn.functional.linear(x, w)


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
           "_int_mm int8": (int_mm, 1), "compiled dequantize-reduce": (compiled_int8, 1), "float32": (float32, 4)}


def sweep_ms(calls: list) -> float:
    clock = Stopwatch(torch.device("cpu"))
    for call in calls:
        call()
    return clock.elapsed() * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="Llama_520M", help="a key of chatterbox's LLAMA_CONFIGS")
    p.add_argument("--kernels", nargs="+", choices=[*KERNELS, *SWEEPS], default=[*KERNELS, *SWEEPS], metavar="NAME",
                   help=f"which kernels to sweep (default all: {'; '.join([*KERNELS, *SWEEPS])})")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
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
    for label, readings in times.items():
        name = label.rsplit(",", 1)[0]
        mb = weights * {**KERNELS, **SWEEPS}[name][1] / 1e6
        median = sorted(rounds.steady(readings))[len(rounds.steady(readings)) // 2]
        print(f"  {label:42s} {rounds.summary(readings)} ms   {mb:.0f} MB of weights -> {mb / median:.1f} GB/s")


if __name__ == "__main__":
    main()
