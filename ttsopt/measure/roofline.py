"""How many bytes a T3 decode step must read, and how fast this device reads: the memory floor.

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


def kv_bytes(t3, cached: float, n_rows: int | None = None) -> float:
    """Keys and values of CACHED positions for N_ROWS sequences (default: the model's), in the
    activations' dtype."""
    c = t3.tfmr.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    size = next(t3.tfmr.parameters()).element_size()
    n_rows = rows(t3) if n_rows is None else n_rows
    return 2 * c.num_hidden_layers * n_rows * heads * head_dim * cached * size


def step_bytes(t3, prefill_len: int, n_tokens: int) -> float:
    """Bytes per decode step, averaged over N steps that start after PREFILL_LEN positions."""
    return weight_bytes(t3) + kv_bytes(t3, prefill_len + n_tokens / 2)


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
