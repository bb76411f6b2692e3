"""no-grad and channels-last: the two halves of the campaign's "inference mode & channels
last" (6–10% claimed together).

The baseline already runs under `torch.inference_mode()`, so `no-grad` measures the other
side: it runs the synthesis under `torch.no_grad()` instead. The claim holds if the baseline
beats `no-grad` by 6–10%, so its claimed ratio (no-grad / baseline) is above 1. Upstream
decorates its T3 backend, S3Gen flow and HiFT with `@torch.inference_mode()`, so only the
code between those calls changes mode. The mode is entered per synthesis of its own
pipeline and left after, so a baseline copy in the same process keeps its own.

`channels-last` converts the modules that accept that memory format, 4-D convolutions
(Conv2d: in S3Gen's speaker encoder), and feeds them channels-last input, as the campaign
describes it. Conv1d and the transposed 1-D convolutions, which most of S3Gen is made of, have
no channels-last format as 1-D modules: they are counted and left as they are here. The evidence
counts how many converted calls the syntheses made: the speaker encoder runs only when a new
reference voice is prepared, so with a fixed voice nothing it converted is ever called. Running
1-D convolutions as channels-last 2-D ones of height 1 is another change, with its own claim on
the vocoder's time: `fast-vocoder` (`engine.vocoder`).
"""
from __future__ import annotations

import torch

from ..core.claims import Claim
from .base import Variant

_UNCONVERTIBLE = (torch.nn.Conv1d, torch.nn.ConvTranspose1d)


class NoGrad(Variant):
    name = "no-grad"
    claims = (Claim("rtf", "claimed 6–10% faster with inference mode than without (inference mode & channels "
                           "last): the baseline runs inference_mode, this variant no_grad, so the claim holds if "
                           "this variant is 6–10% slower", 1 / 0.94, 1 / 0.90, source="assessment #4"),)
    lossless = True
    models = ("original", "turbo", "multilingual")  # acts on what every model of the family has

    def apply(self, pipeline):
        pipeline.grad_mode = torch.no_grad
        seen = {"calls_outside_inference_mode": 0, "calls_inside_inference_mode": 0}

        def observe(inner, text):
            # Fidelity probes run under inference mode on purpose; a synthesis of this variant does not.
            key = "calls_inside_inference_mode" if torch.is_inference_mode_enabled() else "calls_outside_inference_mode"
            seen[key] += 1
            return inner(text)

        pipeline.wrap("text_to_tokens", observe, by=self.name)
        return seen

    def evidence(self, pipeline, seen) -> dict:
        return {"grad_mode": f"torch.{pipeline.grad_mode.__name__}", "baseline_grad_mode": "torch.inference_mode",
                **seen, "still_inference_mode": "upstream's T3 backend forward, S3Gen flow_inference, hift_inference"}

    def engaged(self, evidence):
        n = evidence.get("calls_outside_inference_mode", 0)
        return n > 0, f"{n} synthesis(es) ran outside inference mode"


class ChannelsLast(Variant):
    name = "channels-last"
    claims = (Claim("rtf", "claimed 6–10% faster (inference mode & channels last)", 0.90, 0.94,
                    source="assessment #4"),)
    lossless = True
    models = ("original", "turbo", "multilingual")  # acts on what every model of the family has

    def apply(self, pipeline):
        tts = pipeline.model.tts
        stats = {"converted": 0, "calls": 0, "not_convertible": {}}

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
        return stats

    def evidence(self, pipeline, stats) -> dict:
        weights = [m.weight for m in pipeline.model.s3gen.modules() if isinstance(m, torch.nn.Conv2d)]
        return {"conv2d_converted": stats["converted"],
                "conv2d_weights_channels_last": sum(w.is_contiguous(memory_format=torch.channels_last)
                                                    for w in weights),
                "converted_calls": stats["calls"], "not_convertible": stats["not_convertible"]}

    def engaged(self, evidence):
        calls = evidence.get("converted_calls", 0)
        return calls > 0, (f"{calls} call(s) of a converted convolution" if calls else
                           f"none of the {evidence.get('conv2d_converted', 0)} converted convolutions was called "
                           "(they prepare a new reference voice; this run used a fixed one)")


VARIANTS = [NoGrad(), ChannelsLast()]
