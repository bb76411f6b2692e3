"""How many bytes a T3 decode step must read, and how fast this device reads: the memory floor.

A decode step multiplies two rows (the CFG pair) by every weight of T3's transformer and its
speech head, and attends over the whole KV cache. At two rows the arithmetic is tiny, so the
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
    The text/speech embedding tables are left out (a step reads one row of them)."""
    tfmr = t3.tfmr
    skip = sum(p.numel() * p.element_size() for p in tfmr.get_input_embeddings().parameters())
    return weights.total(tfmr) - skip + weights.total(t3.speech_head)


def kv_bytes(t3, cached: float, rows: int = 2) -> float:
    """Keys and values of CACHED positions for ROWS sequences, in the model's dtype."""
    c = t3.tfmr.config
    size = next(t3.tfmr.parameters()).element_size()
    return 2 * c.num_hidden_layers * rows * c.num_key_value_heads * c.head_dim * cached * size


def step_bytes(t3, prefill_len: int, n_tokens: int) -> float:
    """Bytes per decode step, averaged over N steps that start after PREFILL_LEN positions."""
    return weight_bytes(t3) + kv_bytes(t3, prefill_len + n_tokens / 2)


def read_bandwidth(device, mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second this device reads: the best of REPEATS sums over a MIB-MiB float32
    tensor (larger than any cache that matters here), with torch's threads as configured."""
    device = torch.device(device)
    x = torch.ones(mib * 2**20 // 4, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass faults the pages in
        with wall_timer(device) as t:
            x.sum()
        best = min(best, t.seconds)
    return x.numel() * x.element_size() / best
