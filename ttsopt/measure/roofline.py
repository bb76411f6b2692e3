"""The floors a bench reads its gains against. T3's decode step: how many bytes it must read, and
how fast this device reads (the memory floor). S3Gen's flow: how much arithmetic one call does, and
how fast this device multiplies (the compute floor, at the end of this module).

A decode step multiplies two rows (the original model's CFG pair; Turbo has one) by every weight
of T3's transformer and its speech head, and attends over the whole KV cache. At two rows the arithmetic is tiny, so the
step is bound by reading those bytes from memory: with B bytes and a read bandwidth of W, no
kernel can finish a step in less than B / W. Dividing the baseline's measured step time by
the fast side's floor gives the most any implementation reading those bytes could gain on
this machine; `ttsopt bench` prints both, so a ratio is read against its ceiling.

The count is a lower bound on traffic: every weight and every cached key and value read
once. Upstream reads more (its cache grows by `torch.cat`, a copy of the cache per layer per
step), which only lowers its floor's share of its measured time.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import weights
from .timing import wall_timer


def weight_bytes(t3) -> int:
    """Weights one decode step reads: the transformer's layers and norms and the speech head.
    Embedding tables are left out (a step reads one row of them: Llama's input embeddings,
    GPT-2's position table)."""
    tfmr = t3.tfmr
    skip = sum(weights.total(m) for m in tfmr.modules() if isinstance(m, torch.nn.Embedding))
    return weights.total(tfmr) - skip + weights.total(t3.speech_head)


def rows(t3) -> int:
    """Sequences a decode step runs: the CFG pair for Llama T3 (original), one for GPT-2 (Turbo)."""
    return 1 if getattr(t3, "is_gpt", False) else 2


def kv_bytes(t3, cached: float, n_rows: int | None = None, element_size: int | None = None) -> float:
    """Keys and values of CACHED positions for N_ROWS sequences (default: the model's), ELEMENT_SIZE
    bytes a value (default: the activations' dtype's)."""
    c = t3.tfmr.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    size = element_size or next(t3.tfmr.parameters()).element_size()
    n_rows = rows(t3) if n_rows is None else n_rows
    return 2 * c.num_hidden_layers * n_rows * heads * head_dim * cached * size


def step_bytes(t3, prefill_len: int, n_tokens: int, kv_dtype: torch.dtype | None = None) -> float:
    """Bytes per decode step, averaged over N steps that start after PREFILL_LEN positions, the
    cache in KV_DTYPE (default: the activations')."""
    size = None if kv_dtype is None else torch.empty((), dtype=kv_dtype).element_size()
    return weight_bytes(t3) + kv_bytes(t3, prefill_len + n_tokens / 2, element_size=size)


def read_bandwidths(device, mib: int = 256, repeats: int = 5) -> list[float]:
    """Bytes per second this device read in each of REPEATS sums over a MIB-MiB float32 tensor
    (larger than any cache that matters here), with torch's threads as configured; one unmeasured
    pass first faults the pages in."""
    device = torch.device(device)
    x = torch.ones(mib * 2**20 // 4, device=device)
    rates = []
    for i in range(repeats + 1):
        with wall_timer(device) as t:
            x.sum()
        if i:
            rates.append(x.numel() * x.element_size() / t.seconds)
    return rates


# --- the flow's compute floor ----------------------------------------------------------------------
# The flow is the other end of the roofline: its estimator multiplies hundreds of frames at every
# step, so it is bound by arithmetic, not by the bytes of its weights. Its floor is the arithmetic one
# call does (counted as torch's FlopCounterMode counts it: products, convolutions, attention;
# elementwise work left out), each operator's share over the rate this device multiplies at in the
# kind that operator ran in (its operands' float dtype, or int8-dynamic): an int8 estimator's
# attention and convolutions run in float32 and count at float32's rate, not at int8's.

def _linear_dynamic_flops(input_shape, packed, *args, out_shape=None, **kwargs) -> int:
    """A dynamic-int8 linear layer's multiply-adds, as two FLOPs each (FlopCounterMode has no formula)."""
    weight, _ = torch.ops.quantized.linear_unpack(packed)
    out_features, in_features = weight.shape
    rows = 1
    for d in input_shape[:-1]:
        rows *= d
    return 2 * rows * in_features * out_features


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The CPU's fused attention: both products, as FlopCounterMode counts the CUDA kernels'."""
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _flop_mapping() -> dict:
    """Formulas FlopCounterMode lacks, keyed by operator (not overload), as it looks them up."""
    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
            torch.ops.quantized.linear_dynamic: _linear_dynamic_flops}


class Flops(NamedTuple):
    total: int
    by_op: dict[str, int]         # operator name -> FLOPs
    by_precision: dict[str, int]  # RATE_KINDS name the operator ran in -> FLOPs


def precision_of(op, args) -> str:
    """The kind an operator multiplies in: int8-dynamic for dynamic-int8 linears, else its first
    floating operand's dtype (float32, bfloat16, ...)."""
    if "linear_dynamic" in str(op):
        return "int8-dynamic"
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return str(a.dtype).replace("torch.", "")
    return "unknown"


def count_flops(call) -> Flops:
    """FLOPs of CALL(), split by operator and by the kind each ran in, counted by
    torch.utils.flop_counter: matrix products, convolutions and attention (the CPU's fused
    attention and dynamic-int8 linears included); elementwise work (activations, norms, softmax)
    is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    class Counter(FlopCounterMode):  # FlopCounterMode's formulas see shapes only; the kind needs the operands
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.by_precision: dict[str, int] = {}

        def _count_flops(self, func_packet, out, args, kwargs):
            before = self.flop_counts["Global"][func_packet]
            out = super()._count_flops(func_packet, out, args, kwargs)
            added = self.flop_counts["Global"][func_packet] - before
            if added:
                kind = precision_of(func_packet, args)
                self.by_precision[kind] = self.by_precision.get(kind, 0) + int(added)
            return out

    counter = Counter(display=False, custom_mapping=_flop_mapping())
    with counter:
        call()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items() if n}
    return Flops(int(counter.get_total_flops()), by_op, dict(counter.by_precision))


def floor_seconds(by_precision: dict[str, float], rates: dict[str, float]) -> float:
    """The time BY_PRECISION's arithmetic takes with each kind's share at its RATES (same units)."""
    missing = sorted(set(by_precision) - set(rates))
    if missing:
        raise ValueError(f"no device rate for arithmetic in {', '.join(missing)}; probed: {', '.join(rates)}")
    return sum(n / rates[kind] for kind, n in by_precision.items())


PRODUCTS = ("mm", "addmm", "bmm", "baddbmm", "linear_dynamic")


def by_kind(by_op: dict[str, int]) -> dict[str, int]:
    """COUNT_FLOPS's split by operator, gathered into attention, convolutions and products."""
    out: dict[str, int] = {}
    for op, n in by_op.items():
        name = op.rsplit(".", 1)[-1]
        kind = ("attention" if "attention" in name else "convolutions" if "convolution" in name
                else "products" if name in PRODUCTS else "other")
        out[kind] = out.get(kind, 0) + n
    return out


RATE_KINDS = ("float32", "bfloat16", "float16", "int8-dynamic")


def multiply_rates(device, kind: str, n: int = 1024, repeats: int = 10) -> list[float]:
    """FLOP/s of REPEATS products of two N x N matrices in KIND (a float dtype's name, or
    int8-dynamic: a dynamic-int8 linear layer of N x N on N rows), after one unmeasured."""
    device = torch.device(device)
    if kind not in RATE_KINDS:
        raise ValueError(f"no rate probe for {kind!r}; known: {', '.join(RATE_KINDS)}")
    if kind == "int8-dynamic":
        layer = torch.ao.nn.quantized.dynamic.Linear(n, n)
        x = torch.randn(n, n)
        step = lambda: layer(x)  # noqa: E731
    else:
        dtype = getattr(torch, kind)
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        step = lambda: a @ b  # noqa: E731
    rates = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            with wall_timer(device) as t:
                step()
            if i:
                rates.append(2 * n**3 / t.seconds)
    return rates
