"""The T3 decode step's layer as one `torch.compile`d function.

Why: the same layer code on every device, compiled for it — inductor's C++ backend on a CPU
(elementwise chains such as RMSNorm, rotary and SiLU-times-up fused into loops, the products
left to the BLAS), `mode="reduce-overhead"` (CUDA graphs) on CUDA — so what a GPU would run is
what the CPU tests run. The function compiled is `scripted.layer_float`, the float layer the
TorchScript path runs too, with the weights as arguments: one compile serves all layers, and
positions and cache lengths are symbolic (`dynamic=True`), so it also serves every step of every
utterance (compiling the whole 30-layer step instead took minutes on the tiny model).

What compile cannot serve, and why the other paths stay:
- dynamic int8 linears: their weights are TorchScript objects (`LinearPackedParamsBase`) that
  dynamo does not trace, so `cpu-int8-t3`'s step stays TorchScript (`scripted`);
- the hand-captured CUDA graph (`cuda_graph`) reads the whole static cache at fixed shapes, which
  CUDA graphs need; here the cache read grows with the position, so on CUDA each new length would
  be recorded anew. It is kept until this path is measured on a GPU (none was lent so far).

Compile time is paid on the first call (the pipeline's warm-up) and reported apart from the
steady state (`compile_s`); inductor's FX graph cache keeps compiled code across processes
(under /tmp/torchinductor_<user> unless TORCHINDUCTOR_CACHE_DIR says otherwise), so a second
process compiles faster.
"""
from __future__ import annotations

import time

import torch

from .. import quant
from . import llama_step


class CompiledLayer:
    """`scripted.layer_float` through `torch.compile`, timing its first call (compilation included)."""
    kind = "compiled"

    def __init__(self, device: torch.device, mode: str | None = None):
        scripted = llama_step.scripted_module()
        self.mode = mode or ("reduce-overhead" if device.type == "cuda" else None)
        self.fn = torch.compile(scripted.layer_float, dynamic=True, mode=self.mode)
        self.calls = 0
        self.compile_s: float | None = None  # the first call's wall time: tracing and compiling included

    def __call__(self, h, *args):
        # The first layer's input is an embedding expanded over the CFG rows (stride 0), the others'
        # are not: contiguous for all, or the stride guard would compile a second version.
        args = (h.contiguous(), *args)
        self.calls += 1
        if self.compile_s is not None:
            return self.fn(*args)
        t0 = time.perf_counter()
        out = self.fn(*args)
        self.compile_s = time.perf_counter() - t0
        return out

    def evidence(self) -> dict:
        return {"backend": "inductor", "mode": self.mode or "default", "dynamic": True, "layer_calls": self.calls,
                "compile_s": None if self.compile_s is None else round(self.compile_s, 2)}


def plan(tfmr, mode: str | None = None) -> llama_step.Plan:
    """A llama_step plan whose every layer runs through one `CompiledLayer`. Only float layers:
    dynamic int8 linears get one clear error (dynamo does not trace their packed weights)."""
    quant.refuse_for_compile(tfmr, "compile the float step, or run cpu-int8-t3 without compiling (TorchScript)")
    return llama_step.Plan(tfmr, layer_fn=CompiledLayer(next(tfmr.parameters()).device, mode))
