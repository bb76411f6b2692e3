"""Test-only variants that fail in the ways a long suite meets: loaded through
TTSOPT_VARIANT_MODULES so that the fresh processes a suite starts can see them."""
import os

import torch

from ttsopt.core.claims import Claim
from ttsopt.variants.base import Variant


class _Counting(Variant):
    claims = (Claim("rtf", "test only"),)
    # Fail on the fourth synthesis: the warm-up and two pairs are already recorded.
    after = int(os.environ.get("TTSOPT_TEST_FAULT_AFTER", "3"))

    def apply(self, pipeline):
        calls = {"n": 0}

        def counted(synthesize, text, **kwargs):
            calls["n"] += 1
            if calls["n"] > self.after:
                self.fail()
            return synthesize(text, **kwargs)

        pipeline.wrap_synthesis(counted, by=self.name)
        return calls

    def evidence(self, pipeline, calls):
        return {"fails_after": self.after, "calls": calls["n"]}


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
        if os.environ.get("TTSOPT_TEST_NO_FAULT"):
            return
        os._exit(3)


VARIANTS = [Raises(), ExhaustsMemory(), KillsKernel()]
