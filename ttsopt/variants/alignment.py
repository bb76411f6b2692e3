"""alignment-analyzer: upstream's AlignmentStreamAnalyzer on the English T3 (upstream builds it
only for the multilingual model, whose baseline runs it already). How one synthesis' analyzer
is run, timed and removed is `engine.t3.alignment`.
"""
from __future__ import annotations

from chatterbox.models.t3.inference import alignment_stream_analyzer as asa

from ..core.claims import Claim, less
from ..engine.t3 import alignment
from .base import Variant, lean_runner


class AlignmentAnalyzer(Variant):
    name = "alignment-analyzer"
    claims = (Claim("time_to_stop", "claimed 32% faster sequential inference (alignment stream analyzer)",
                    *less(32), source="assessment #1"),)
    requires = ("14+ transformer layers (upstream reads layers 9, 12 and 13)",)
    conflicts = ("flash-attention",)  # it needs attention maps, which only eager attention returns
    models = ("original",)
    not_for = {"multilingual": "upstream runs the analyzer in every multilingual decode: the baseline has it already"}

    def check(self, pipeline=None) -> str | None:
        if pipeline is not None:
            layers = len(pipeline.model.t3.tfmr.layers)
            if layers <= max(layer for layer, _ in asa.LLAMA_ALIGNED_HEADS):
                return f"T3 has {layers} layers; upstream's analyzer reads layers 9, 12 and 13"
        return super().check(pipeline)

    def apply(self, pipeline):
        runner = lean_runner(pipeline, self.name)
        log = {"syntheses": 0}
        runner.analyzer_factory = alignment.factory(log)
        return log

    def evidence(self, pipeline, log) -> dict:
        log = dict(log)
        tfmr = pipeline.model.t3.tfmr
        # All forward hooks on the attention modules (transformers' own output recorders included):
        # flat across syntheses when the analyzer's hooks are removed each time.
        log["attention_hooks_now"] = sum(len(layer.self_attn._forward_hooks) for layer in tfmr.layers)
        log["attention_now"] = tfmr.config._attn_implementation
        if log.get("steps"):
            log["step_ms_mean"] = round(1000 * log["step_s"] / log["steps"], 4)
        return log

    def engaged(self, evidence):
        steps = evidence.get("steps", 0)
        return steps > 0, f"the analyzer read attention on {steps} step(s) of the last synthesis"


VARIANTS = [AlignmentAnalyzer()]
