"""CUDA graph capture, in one place for the T3 decode step and the S3Gen estimator.

Requires CUDA; nothing here runs on a CPU-only machine, so it is kept to the one function."""
from __future__ import annotations

import torch


def capture(step, warmup: int = 2):
    """Run STEP (no arguments, reads and writes static buffers) WARMUP times on a side stream,
    as capture requires, then capture one call. Returns (graph, what the captured call returned)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out
