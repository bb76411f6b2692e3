"""cpu-offload: S3Gen and the voice encoder live on the CPU and visit the GPU only for their
own stage (the flow for `flow`, the vocoder for `vocode`, the encoders when a new reference
voice is prepared), so T3 decodes with them out of VRAM. Moves are synchronous and timed.
CUDA only; lossless (the same modules compute the same things)."""
from __future__ import annotations

import functools
import time

import torch

from .base import Variant

_MIB = 2**20


class CpuOffload(Variant):
    name = "cpu-offload"
    claim = "claimed 400 MB less VRAM (CPU offloading)"
    requires = ("CUDA",)
    lossless = True

    def apply(self, pipeline) -> None:
        tts, s3gen, device = pipeline.model.tts, pipeline.model.s3gen, pipeline.device
        log = pipeline.offload = {"moves": 0, "move_s": 0.0}
        encoders = [tts.ve, s3gen.tokenizer, s3gen.speaker_encoder]
        log["offloaded_mb"] = round(sum(p.numel() * p.element_size() for m in encoders + [s3gen.flow, s3gen.mel2wav]
                                        for p in m.parameters()) / _MIB, 2)

        def move(modules, where):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for m in modules:
                m.to(where)
            torch.cuda.synchronize()
            log["moves"] += 1
            log["move_s"] += time.perf_counter() - t0

        def visiting(stage, modules):
            @functools.wraps(stage)
            def run(*args, **kwargs):
                move(modules, device)
                try:
                    return stage(*args, **kwargs)
                finally:
                    move(modules, "cpu")
            return run

        move(encoders + [s3gen.flow, s3gen.mel2wav], "cpu")
        pipeline.flow = visiting(pipeline.flow, [s3gen.flow])
        pipeline.vocode = visiting(pipeline.vocode, [s3gen.mel2wav])
        conditioning = pipeline.conditioning

        def conditioning_with_encoders(reference_wav=None):
            if reference_wav is None:
                return conditioning(None)
            return visiting(conditioning, encoders)(reference_wav)

        pipeline.conditioning = conditioning_with_encoders

    def evidence(self, pipeline) -> dict:
        s3gen = pipeline.model.s3gen
        return {**pipeline.offload, "flow_device_now": str(next(s3gen.flow.parameters()).device),
                "vocoder_device_now": str(next(s3gen.mel2wav.parameters()).device),
                "voice_encoder_device_now": str(next(pipeline.model.tts.ve.parameters()).device)}


VARIANTS = [CpuOffload()]
