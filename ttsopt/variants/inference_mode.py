"""no-grad and channels-last: the two halves of the assessment's "inference mode & channels
last" (6–10% claimed together).

The baseline already runs under `torch.inference_mode()`, so `no-grad` measures the other
side: it runs the synthesis under `torch.no_grad()` instead. The claim holds if the baseline
beats `no-grad` by 6–10%. Upstream decorates its T3 backend, S3Gen flow and HiFT with
`@torch.inference_mode()`, so only the code between those calls changes mode.

`channels-last` converts the modules that accept that memory format, 4-D convolutions
(Conv2d: in S3Gen's speaker encoder), and feeds them channels-last input. Conv1d and the
transposed 1-D convolutions, which most of S3Gen is made of, have no channels-last format:
they are counted and left as they are. The evidence also counts how many converted calls a
synthesis made: the speaker encoder runs only when a new reference voice is prepared.
"""
from __future__ import annotations

import torch

from .base import Variant

_UNCONVERTIBLE = (torch.nn.Conv1d, torch.nn.ConvTranspose1d)


class NoGrad(Variant):
    name = "no-grad"
    claim = ("claimed 6–10% faster (inference mode & channels last); the baseline runs inference_mode, "
             "this variant runs no_grad, so the claim holds if the baseline is 6–10% faster than it")
    lossless = True

    def apply(self, pipeline) -> None:
        pipeline.grad_mode = torch.no_grad

    def evidence(self, pipeline) -> dict:
        return {"grad_mode": f"torch.{pipeline.grad_mode.__name__}",
                "baseline_grad_mode": "torch.inference_mode",
                "still_inference_mode": "upstream's T3 backend forward, S3Gen flow_inference, hift_inference"}


class ChannelsLast(Variant):
    name = "channels-last"
    claim = "claimed 6–10% faster (inference mode & channels last)"
    lossless = True

    def apply(self, pipeline) -> None:
        tts = pipeline.model.tts
        pipeline.channels_last = stats = {"converted": 0, "calls": 0, "not_convertible": {}}

        def to_channels_last(module, args):
            stats["calls"] += 1
            return tuple(a.contiguous(memory_format=torch.channels_last) if torch.is_tensor(a) and a.dim() == 4
                         else a for a in args)

        for part in (tts.t3, tts.s3gen, tts.ve):
            for m in part.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.to(memory_format=torch.channels_last)
                    m.register_forward_pre_hook(to_channels_last)
                    stats["converted"] += 1
                elif isinstance(m, _UNCONVERTIBLE):
                    kind = type(m).__name__
                    stats["not_convertible"][kind] = stats["not_convertible"].get(kind, 0) + 1

    def evidence(self, pipeline) -> dict:
        stats = pipeline.channels_last
        weights = [m.weight for m in pipeline.model.s3gen.modules() if isinstance(m, torch.nn.Conv2d)]
        return {"conv2d_converted": stats["converted"],
                "conv2d_weights_channels_last": sum(w.is_contiguous(memory_format=torch.channels_last)
                                                    for w in weights),
                "converted_calls_so_far": stats["calls"],
                "not_convertible": stats["not_convertible"]}


VARIANTS = [NoGrad(), ChannelsLast()]
