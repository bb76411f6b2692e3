"""cuda-cache: `torch.cuda.empty_cache()` after every request, and the caching allocator in
expandable-segments mode (`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`), which must
be set before CUDA starts: the runner sets `env` for the variant's own process. CUDA only;
lossless."""
from __future__ import annotations

import functools
import os

import torch

from .base import Variant

ALLOC_CONF = "expandable_segments:True"


class CudaCache(Variant):
    name = "cuda-cache"
    claim = "claimed 40–60% less VRAM (CUDA cache management)"
    requires = ("CUDA",)
    lossless = True
    env = {"PYTORCH_CUDA_ALLOC_CONF": ALLOC_CONF}

    def check(self, pipeline=None) -> str | None:
        reason = super().check(pipeline)
        if reason is None and pipeline is not None and ALLOC_CONF not in os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""):
            return (f"PYTORCH_CUDA_ALLOC_CONF={ALLOC_CONF} must be set before CUDA starts: "
                    "run it through the runner (which sets the variant's env) or export it")
        return reason

    def apply(self, pipeline) -> None:
        synthesize = pipeline.synthesize
        pipeline.empty_cache_calls = 0

        @functools.wraps(synthesize)
        def then_empty_cache(*args, **kwargs):
            try:
                return synthesize(*args, **kwargs)
            finally:
                torch.cuda.empty_cache()
                pipeline.empty_cache_calls += 1

        pipeline.synthesize = then_empty_cache

    def evidence(self, pipeline) -> dict:
        return {"PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
                "empty_cache_calls": pipeline.empty_cache_calls,
                "reserved_mb_now": round(torch.cuda.memory_reserved() / 2**20, 2)}


VARIANTS = [CudaCache()]
