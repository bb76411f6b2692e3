"""flash-attention: T3's attention on a FlashAttention kernel.

With the `flash-attn` package installed, transformers' "flash_attention_2" implementation;
otherwise PyTorch SDPA with its flash kernel forced (`sdpa_kernel(FLASH_ATTENTION)`), which
fails loudly rather than fall back to another kernel. Upstream asks for attention maps on
every step, which no fused kernel returns, so this variant also stops asking (and stops
collecting every layer's hidden states). Flash kernels take fp16/bf16 only: compose with a
precision variant (`bf16+flash-attention`). Evidence: the kernel names a profiled T3 run
launches.
"""
from __future__ import annotations

import importlib.util

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..core.claims import Claim, less
from .base import NotApplicable, Variant, lean_runner

PROFILE_TEXT = "Flash check."


def _flash_sdpa():
    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


class FlashAttention(Variant):
    name = "flash-attention"
    claims = (Claim("rtf", "claimed 25–40% speedup (Flash Attention 2)", *less(25, 40), source="assessment #2"),)
    requires = ("CUDA",)
    # The analyzer needs attention maps; a static cache needs an explicit mask, which the
    # flash kernel does not take.
    conflicts = ("alignment-analyzer", "static-kv-cache")
    models = ("original",)
    not_for = {"multilingual": "the multilingual model runs upstream's alignment analyzer on every step, which "
                               "needs the attention maps that flash attention does not return"}

    def apply(self, pipeline):
        runner = lean_runner(pipeline, self.name)
        runner.attention_maps = False
        state = {"kernels": None}
        if importlib.util.find_spec("flash_attn") is not None:
            pipeline.model.t3.tfmr.set_attn_implementation("flash_attention_2")
            state["backend"] = "flash_attn package (transformers flash_attention_2)"
        else:
            runner.step_contexts.append(_flash_sdpa)
            state["backend"] = "torch SDPA, flash kernel forced"
        return state

    def after_load(self, pipeline, state) -> None:
        dtype = next(pipeline.model.t3.tfmr.parameters()).dtype
        if dtype == torch.float32:
            raise NotApplicable(self.name, "flash kernels take fp16/bf16 only and T3 runs float32: "
                                           "compose with a precision variant, e.g. bf16+flash-attention")

    def evidence(self, pipeline, state) -> dict:
        if state["kernels"] is None:
            state["kernels"] = sorted(_profiled_kernels(pipeline))
        flash = [k for k in state["kernels"] if "flash" in k.lower()]
        return {"backend": state["backend"], "attention_maps_requested": pipeline.t3.attention_maps,
                "attn_implementation": pipeline.model.t3.tfmr.config._attn_implementation, "flash_kernels": flash}

    def engaged(self, evidence):
        kernels = evidence.get("flash_kernels") or []
        return bool(kernels), (f"the profiler saw {', '.join(kernels[:3])}" if kernels
                               else "the profiler saw no flash kernel in a T3 pass")


def _profiled_kernels(pipeline) -> set[str]:
    """Kernel names of a short T3 run (prefill and 3 steps) under the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with pipeline.grad_mode():
        text = pipeline.text_to_tokens(PROFILE_TEXT)
        conds = pipeline.conditioning()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            state = pipeline.t3.prefill(conds.t3, text, pipeline.sampling)
            pipeline.t3.decode(state, pipeline.sampling, n_tokens=3)
            torch.cuda.synchronize()
    return {e.key for e in prof.key_averages()}


VARIANTS = [FlashAttention()]
