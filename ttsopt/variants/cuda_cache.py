"""cuda-cache: `torch.cuda.empty_cache()` after every request, and the caching allocator in
expandable-segments mode (`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`), which must
be set before CUDA starts: the runner sets `env` for the variant's own process. Both change
the whole process's allocator, so it is measured across processes. The `empty_cache` call is
inside the synthesis, so its cost is timed and its effect is what the memory metrics see.
CUDA only; lossless."""
from __future__ import annotations

import os

import torch

from ..core.claims import Claim, less
from ..core.vocab import Design
from .base import Variant

ALLOC_CONF = "expandable_segments:True"


class CudaCache(Variant):
    name = "cuda-cache"
    claims = (Claim("reserved_memory", "claimed 40–60% less VRAM (CUDA cache management)", *less(40, 60),
                    source="assessment #11"),)
    requires = ("CUDA",)
    lossless = True
    env = {"PYTORCH_CUDA_ALLOC_CONF": ALLOC_CONF}
    design = Design.CROSS_PROCESS
    design_reason = "it changes the whole process's CUDA allocator (settings and cache)"

    models = ("original", "turbo", "multilingual")  # acts on what every model of the family has
    def check(self, pipeline=None) -> str | None:
        reason = super().check(pipeline)
        if reason is None and pipeline is not None and ALLOC_CONF not in os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""):
            return (f"PYTORCH_CUDA_ALLOC_CONF={ALLOC_CONF} must be set before CUDA starts: "
                    "run it through the runner (which sets the variant's env) or export it")
        return reason

    def apply(self, pipeline):
        state = {"empty_cache_calls": 0}

        def then_empty_cache(synthesize, text, **kw):
            try:
                return synthesize(text, **kw)
            finally:
                torch.cuda.empty_cache()
                state["empty_cache_calls"] += 1

        pipeline.wrap_synthesis(then_empty_cache, by=self.name)
        return state

    def evidence(self, pipeline, state) -> dict:
        return {"PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), **state,
                "reserved_mb_now": round(torch.cuda.memory_reserved() / 2**20, 2)}

    def engaged(self, evidence):
        n = evidence.get("empty_cache_calls", 0)
        return n > 0, f"empty_cache ran after {n} synthesis(es)"


VARIANTS = [CudaCache()]
