"""Test-only variants that fail in the ways a long suite meets: loaded through
TTSOPT_VARIANT_MODULES so that the fresh processes a suite starts can see them."""
import os

import torch

from ttsopt.variants.base import Variant


class _Counting(Variant):
    claim = "test only"
    after = 3  # fail on the fourth synthesis: cold, warm-up and a first trial are already recorded

    def apply(self, pipeline):
        synthesize, calls = pipeline.synthesize, {"n": 0}

        def counted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > self.after:
                self.fail()
            return synthesize(*args, **kwargs)

        pipeline.synthesize = counted

    def evidence(self, pipeline):
        return {"fails_after": self.after}


class Raises(_Counting):
    name = "fault-raises"

    def fail(self):
        raise RuntimeError("planted failure in a variant")


class ExhaustsMemory(_Counting):
    name = "fault-oom"

    def fail(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB (simulated)")


class KillsKernel(_Counting):
    name = "fault-dies"

    def fail(self):
        os._exit(3)


VARIANTS = [Raises(), ExhaustsMemory(), KillsKernel()]
