"""cpu-offload: S3Gen and the voice encoder live on the CPU and visit the GPU only for their
own stage (the flow for `flow`, the vocoder for `vocode`, the encoders when a new reference
voice is prepared), so T3 decodes with them out of VRAM. Moves are synchronous and timed.
CUDA only; lossless (the same modules compute the same things)."""
from __future__ import annotations

from ..core.claims import Claim
from ..measure.timing import wall_timer
from .base import Variant

_MIB = 2**20


class CpuOffload(Variant):
    name = "cpu-offload"
    claims = (Claim("resident_memory", "claimed 400 MB less VRAM (CPU offloading)", -400.0, -400.0, unit="MiB",
                    source="assessment #10"),)
    requires = ("CUDA",)
    lossless = True

    def apply(self, pipeline):
        tts, s3gen, device = pipeline.model.tts, pipeline.model.s3gen, pipeline.device
        log = {"moves": 0, "move_s": 0.0}
        encoders = [tts.ve, s3gen.tokenizer, s3gen.speaker_encoder]
        log["offloaded_mb"] = round(sum(p.numel() * p.element_size() for m in encoders + [s3gen.flow, s3gen.mel2wav]
                                        for p in m.parameters()) / _MIB, 2)

        def move(modules, where):
            with wall_timer(device) as t:
                for m in modules:
                    m.to(where)
            log["moves"] += 1
            log["move_s"] += t.seconds

        def visiting(modules):
            def run(inner, *args, **kwargs):
                move(modules, device)
                try:
                    return inner(*args, **kwargs)
                finally:
                    move(modules, "cpu")
            return run

        move(encoders + [s3gen.flow, s3gen.mel2wav], "cpu")
        pipeline.wrap("flow", visiting([s3gen.flow]), by=self.name)
        pipeline.wrap("vocode", visiting([s3gen.mel2wav]), by=self.name)

        def conditioning(inner, reference_wav=None):
            if reference_wav is None:
                return inner(None)
            return visiting(encoders)(inner, reference_wav)

        pipeline.wrap("conditioning", conditioning, by=self.name)
        return log

    def evidence(self, pipeline, log) -> dict:
        s3gen = pipeline.model.s3gen
        return {**log, "flow_device_now": str(next(s3gen.flow.parameters()).device),
                "vocoder_device_now": str(next(s3gen.mel2wav.parameters()).device),
                "voice_encoder_device_now": str(next(pipeline.model.tts.ve.parameters()).device)}

    def engaged(self, evidence):
        ok = evidence.get("moves", 0) > 1 and evidence.get("flow_device_now") == "cpu"
        return ok, f"{evidence.get('moves', 0)} moves between devices; flow now on {evidence.get('flow_device_now')}"


VARIANTS = [CpuOffload()]
