"""warmup: synthesize a few short utterances right after load, so the first real request finds
kernels chosen, caches and allocator pools grown, and lazy imports done.

Its claim is about the first call after load, which only a fresh process has: it is measured
across processes (each round a fresh baseline process and a fresh warmup process), and judged
on that first call. The routine runs in `after_load`, inside the timed load, so the load grows by
what it costs. It is a short and a longer forced length, because some first-time costs
(allocator growth, kernel choice) depend on the shapes seen. Each synthesis seeds its own
random stream, so the routine leaves the caller's untouched: lossless.
"""
from __future__ import annotations

from ..core.claims import Claim, less
from ..core.vocab import Design
from ..measure.timing import Stopwatch
from .base import Variant

WARMUP_TEXT = "Warming up the synthesis pipeline."
WARMUP_TOKENS = (8, 48)  # speech tokens per warm-up run: about 0.3 s and 1.9 s of audio


class Warmup(Variant):
    name = "warmup"
    claims = (Claim("cold_start", "claimed 50–70% lower cold start (warmup strategy)", *less(50, 70),
                    source="assessment #5"),)
    lossless = True
    design = Design.CROSS_PROCESS
    design_reason = "its claim is about the first call after load, which only a fresh process has"
    models = ("original", "turbo", "multilingual")  # acts on what every model of the family has

    def apply(self, pipeline):
        return {"runs": [], "warmup_s": None}

    def after_load(self, pipeline, state) -> None:
        clock = Stopwatch(pipeline.device)
        for n in WARMUP_TOKENS:
            out = pipeline.synthesize(WARMUP_TEXT, seed=0, n_tokens=n)
            state["runs"].append({"n_tokens": n, "wall_s": round(out.wall_s, 4)})
        state["warmup_s"] = round(clock.elapsed(), 4)

    def evidence(self, pipeline, state) -> dict:
        return {"text": WARMUP_TEXT, **state}

    def engaged(self, evidence):
        runs = len(evidence.get("runs", []))
        return runs == len(WARMUP_TOKENS), f"{runs} warm-up synthesis(es) ran after load"


VARIANTS = [Warmup()]
