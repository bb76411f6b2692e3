"""fp16 and bf16: weights cast and autocast, per module group (T3, S3Gen flow, vocoder).

Autocast is needed beside the weight cast because the conditionals (speaker embedding,
prompt features) stay float32 and upstream feeds them straight into the cast layers.
bf16 leaves the HiFT vocoder in float32: its iSTFT builds a complex tensor, which torch
has no bfloat16 kernel for. Neither variant is lossless.

On a CPU without native units for the type (avx512_bf16/amx_bf16 for bf16, avx512_fp16/
amx_fp16 for fp16) the arithmetic is emulated and usually slower than float32; the
variant runs anyway (that is a result worth measuring) and its evidence flags it.
"""
from __future__ import annotations

import functools

import torch

from ..core.claims import Claim, less
from ..measure.env import BF16_UNITS, FP16_UNITS
from .base import Variant, dtypes_of, lean_runner, native_units

_CPU_UNITS = {torch.bfloat16: BF16_UNITS, torch.float16: FP16_UNITS}


def _autocast(device_type: str, dtype: torch.dtype):
    def run(inner, *args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            return inner(*args, **kwargs)
    return run


class MixedPrecision(Variant):
    def __init__(self, name: str, dtype: torch.dtype, groups: tuple[str, ...], why_not_vocoder: str = ""):
        self.name, self.dtype, self.groups, self.why_not_vocoder = name, dtype, groups, why_not_vocoder
        self.claims = (Claim("rtf", "claimed 20–35% faster (mixed precision)", *less(20, 35), source="assessment #3"),)
        # One precision at a time; dynamic int8 quantizes float32 linears only.
        self.conflicts = ("cpu-int8", "cpu-int8-t3") + tuple(n for n in ("fp16", "bf16") if n != name)

    def _modules(self, pipeline) -> dict[str, torch.nn.Module]:
        s3gen = pipeline.model.s3gen
        return {"t3": pipeline.model.t3, "flow": s3gen.flow, "vocoder": s3gen.mel2wav}

    def apply(self, pipeline):
        device_type = pipeline.device.type
        modules = self._modules(pipeline)
        for group in self.groups:
            modules[group].to(self.dtype)
        conds = pipeline.model.tts.conds
        if conds is not None:
            # T3 caches the prompt's speech embedding in the conditionals on first use; drop it
            # so it is recomputed in the new precision.
            conds.t3.cond_prompt_speech_emb = None
        if "t3" in self.groups:
            lean_runner(pipeline, self.name).step_contexts.append(
                functools.partial(torch.autocast, device_type, dtype=self.dtype))
        if "flow" in self.groups:
            pipeline.wrap("flow", _autocast(device_type, self.dtype), by=self.name)
        if "vocoder" in self.groups:
            pipeline.wrap("vocode", _autocast(device_type, self.dtype), by=self.name)
        return None

    def evidence(self, pipeline, state) -> dict:
        ev = {f"{group}_dtypes": dtypes_of(m) for group, m in self._modules(pipeline).items()}
        ev["autocast_groups"] = list(self.groups)
        if self.why_not_vocoder:
            ev["vocoder_kept_float32"] = self.why_not_vocoder
        return {**ev, **native_units(pipeline, _CPU_UNITS[self.dtype], self.dtype)}

    def engaged(self, evidence):
        name = str(self.dtype).replace("torch.", "")
        cast = evidence.get("t3_dtypes", {}).get(name, 0)
        return cast > 0, f"{cast} T3 parameters in {name}"


VARIANTS = [
    MixedPrecision("fp16", torch.float16, ("t3", "flow", "vocoder")),
    MixedPrecision("bf16", torch.bfloat16, ("t3", "flow"),
                   why_not_vocoder="HiFT's iSTFT builds a complex tensor; torch has no bfloat16 complex kernel"),
]
