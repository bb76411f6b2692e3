"""The fast path (ttsopt.fast) as variants: the architectural changes the assessment pointed at.

`batch` is not here: it changes what a run is (N prompts at once), not one stage of a
single-prompt synthesis, so it is measured by `ttsopt.fast.batch.synthesize_batch` and
`python -m ttsopt bench --batch N`.
"""
from __future__ import annotations

import torch

from ..fast import int8
from ..fast.stream import ChunkedS3Gen
from ..fast.s3gen import UPSTREAM_CFM_STEPS, BucketedEstimator, FastFlow
from ..fast.t3_decode import FastT3
from .base import Variant, dtypes_of


def _flow_stage(pipeline):
    """The flow that actually runs: the pipeline's, or the one inside streaming's chunker."""
    chunked = getattr(pipeline.flow, "__self__", None)
    return chunked.flow_stage if isinstance(chunked, ChunkedS3Gen) else pipeline.flow


def _set_flow_stage(pipeline, flow) -> None:
    chunked = getattr(pipeline.flow, "__self__", None)
    if isinstance(chunked, ChunkedS3Gen):
        chunked.flow_stage = flow
    else:
        pipeline.flow = flow


class FastT3Variant(Variant):
    name = "fast-t3"
    claim = ("static KV cache + on-device sampling + no per-step host sync (+ CUDA graph on CUDA): "
             "the assessment's route to 1.6x end to end / up to 4.6x per T3 token")
    lossless = True

    def apply(self, pipeline) -> None:
        pipeline.t3 = FastT3(pipeline.model.t3)

    def evidence(self, pipeline) -> dict:
        t3 = pipeline.t3
        if not isinstance(t3, FastT3):
            return {"active": False, "reason": f"pipeline.t3 is {type(t3).__name__}"}
        return {"active": True, "t3": type(t3).__name__, **t3.evidence()}


class FastS3GenVariant(Variant):
    name = "fast-s3gen"
    claim = ("CFM estimator (~95% of S3Gen flow time) in bfloat16, padded to length buckets and "
             "replayed from CUDA graphs on CUDA; reduced precision is a fidelity trade-off, shown")
    lossless = False
    dtype = torch.bfloat16

    def apply(self, pipeline) -> None:
        # Only the estimator: the encoder is ~5% of the time, and keeping `mu` in float32 keeps
        # the CFM noise (randn_like(mu)) the very values upstream draws for the same seed.
        decoder = pipeline.model.s3gen.flow.decoder
        if not isinstance(decoder.estimator, BucketedEstimator):
            decoder.estimator = BucketedEstimator(decoder.estimator, graphs=pipeline.device.type == "cuda")
        decoder.estimator.to(self.dtype)
        if not isinstance(_flow_stage(pipeline), FastFlow):
            _set_flow_stage(pipeline, FastFlow(pipeline.model.s3gen))

    def evidence(self, pipeline) -> dict:
        flow = pipeline.model.s3gen.flow
        est = flow.decoder.estimator
        return {"estimator_dtypes": dtypes_of(est), "encoder_dtypes": dtypes_of(flow.encoder),
                "vocoder_dtypes": dtypes_of(pipeline.model.s3gen.mel2wav),
                "estimator": est.evidence() if isinstance(est, BucketedEstimator) else "not wrapped",
                "flow_calls": getattr(_flow_stage(pipeline), "calls", None)}


class CfmSteps(Variant):
    lossless = False

    def __init__(self, steps: int):
        self.steps = steps
        self.name = f"cfm-steps-{steps}"
        self.claim = (f"{steps} CFM Euler steps instead of upstream's {UPSTREAM_CFM_STEPS}: "
                      "quality trade-off, not lossless")
        self.conflicts = tuple(f"cfm-steps-{k}" for k in (2, 4, 6) if k != steps)

    def apply(self, pipeline) -> None:
        flow = _flow_stage(pipeline)
        if isinstance(flow, FastFlow):
            flow.n_timesteps = self.steps
        else:
            _set_flow_stage(pipeline, FastFlow(pipeline.model.s3gen, n_timesteps=self.steps))

    def evidence(self, pipeline) -> dict:
        flow = _flow_stage(pipeline)
        return {"n_cfm_timesteps": getattr(flow, "n_timesteps", None),
                "upstream": UPSTREAM_CFM_STEPS, "flow_calls": getattr(flow, "calls", None)}


class CpuInt8(Variant):
    """Dynamic int8 for the linear layers of T3's transformer and (unless t3_only) S3Gen's flow.
    T3's speech head stays float: upstream reads `t3.device` from its weight."""
    requires = ("CPU (dynamic int8 kernels are CPU-only)",)
    lossless = False

    def __init__(self, name: str, t3_only: bool):
        self.name = name
        self.t3_only = t3_only
        where = "T3 transformer" if t3_only else "T3 transformer and S3Gen flow"
        self.claim = f"dynamic int8 linear layers in the {where}; target: a T3 decode step 0.30 s -> 0.09 s on a 2-core CPU"
        self.conflicts = ("fast-s3gen",) if not t3_only else ()

    def check(self, pipeline=None):
        if pipeline is not None and pipeline.device.type != "cpu":
            return f"dynamic int8 runs on CPU only; the model is on {pipeline.device}"
        return None

    def _targets(self, pipeline):
        targets = {"t3.tfmr": pipeline.model.t3.tfmr}
        if not self.t3_only:
            targets["s3gen.flow"] = pipeline.model.s3gen.flow
        return targets

    def apply(self, pipeline) -> None:
        for module in self._targets(pipeline).values():
            int8.quantize_linears(module)

    def evidence(self, pipeline) -> dict:
        return {name: {**int8.linear_counts(m), "linear_weight_mb": round(int8.linear_weight_bytes(m) / 2**20, 1)}
                for name, m in self._targets(pipeline).items()}


class StreamVariant(Variant):
    """As a stage swap, S3Gen renders the tokens chunk by chunk (the cost of streaming); time to
    first audio needs T3's live stream: `ttsopt.fast.stream.synthesize_stream`, bench --stream."""
    name = "stream"
    claim = "first audio before T3 finishes: S3Gen renders T3's token stream in chunks of 25 tokens"
    lossless = False

    def apply(self, pipeline) -> None:
        chunked = ChunkedS3Gen(pipeline)
        pipeline.flow, pipeline.vocode = chunked.flow, chunked.vocode

    def evidence(self, pipeline) -> dict:
        chunked = getattr(pipeline.flow, "__self__", None)
        if not isinstance(chunked, ChunkedS3Gen):
            return {"active": False, "reason": "pipeline.flow is not chunked"}
        return {"active": True, "chunk_tokens": chunked.chunk_tokens, "flow_calls": chunked.chunks,
                "mel_frames_per_chunk": chunked.segments}


VARIANTS = [FastT3Variant(), FastS3GenVariant(), CpuInt8("cpu-int8", t3_only=False),
            CpuInt8("cpu-int8-t3", t3_only=True), CfmSteps(2), CfmSteps(4), CfmSteps(6), StreamVariant()]
