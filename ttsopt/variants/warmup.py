"""warmup: synthesize a few short utterances right after load, so the first real request finds
kernels chosen, caches and allocator pools grown, and lazy imports done.

It runs in `after_load`, inside the timed load: the runner's "load" phase grows by what the
routine costs and its "cold" phase (the first request after load) should shrink. The
routine is a short and a longer forced length, because some first-time costs (allocator
growth, autotuned kernels) depend on the shapes seen. Warm-up runs do not consume the
caller's random stream (each synthesis seeds its own), so it is lossless.
"""
from __future__ import annotations

import time

from .base import Variant

WARMUP_TEXT = "Warming up the synthesis pipeline."
WARMUP_TOKENS = (8, 48)  # speech tokens per warm-up run: about 0.3 s and 1.9 s of audio


class Warmup(Variant):
    name = "warmup"
    claim = "claimed 50–70% lower cold start (warmup strategy)"
    lossless = True

    def apply(self, pipeline) -> None:
        pipeline.warmup_runs = []

    def after_load(self, pipeline) -> None:
        t0 = time.perf_counter()
        for n in WARMUP_TOKENS:
            out = pipeline.synthesize(WARMUP_TEXT, seed=0, n_tokens=n)
            pipeline.warmup_runs.append({"n_tokens": n, "wall_s": round(out.wall_s, 4)})
        pipeline.warmup_s = time.perf_counter() - t0

    def evidence(self, pipeline) -> dict:
        return {"text": WARMUP_TEXT, "runs": pipeline.warmup_runs,
                "warmup_s": round(getattr(pipeline, "warmup_s", float("nan")), 4)}


VARIANTS = [Warmup()]
