import importlib
import re

import numpy as np
import pytest
import torch

from ttsopt import cli, variants
from ttsopt.core.claims import METRICS
from ttsopt.core.errors import UserError
from ttsopt.engine import sources
from ttsopt.engine.pipeline import SAMPLES_PER_TOKEN, Pipeline, Sampling
from ttsopt.variants import NotApplicable
from ttsopt.variants.token_budget import budget, split_forced

# The assessment's eleven optimizations (other modules hold variants tested by their own files).
ELEVEN = ("alignment", "flash_attention", "precision", "inference_mode", "warmup", "vocos_vocoder",
          "token_budget", "quantize", "static_kv", "offload", "cuda_cache")
# cpu-int8-t3 lives with the fast path; under its alias torch-int8-t3 it carries the bitsandbytes claim on a CPU.
NAMES = sorted([v.name for m in ELEVEN for v in importlib.import_module(f"ttsopt.variants.{m}").VARIANTS]
               + ["torch-int8-t3"])
TEXT = "Hello world. How are you?"
SEED, N = 3, 12
# Variants known to change only the pipeline share the session's model; any other variant
# (weights cast, modules replaced or moved) gets a model of its own.
PIPELINE_ONLY = {"alignment-analyzer", "no-grad", "static-kv-cache", "token-budget", "vocos", "warmup", "cuda-cache"}


@pytest.fixture(scope="module")
def baseline_tokens(tiny_model):
    return Pipeline(tiny_model).synthesize(TEXT, seed=SEED, n_tokens=N).tokens


def pipeline_for(name, tiny_model):
    return Pipeline(tiny_model if name in PIPELINE_ONLY else sources.load("tiny", device="cpu"))


@pytest.mark.parametrize("name", NAMES)
def test_variant_applies_or_says_why_not(name, tiny_model, baseline_tokens):
    variant = variants.registry(aliases=True)[name]
    claim = variant.claims[0]  # the assessment's claim, recorded as data on its own metric
    assert claim.text.startswith("claimed ") and claim.source.startswith("assessment #") and claim.metric in METRICS
    assert claim.low is not None and claim.low <= claim.high
    reason = variant.check(None)
    if reason:
        with pytest.raises(NotApplicable, match=re.escape(reason.split("(")[0].strip())):
            variants.apply(Pipeline(tiny_model), name)
        return
    pipeline = pipeline_for(variant.name, tiny_model)
    applied = variants.apply(pipeline, name)
    out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
    assert len(out.wav) == N * SAMPLES_PER_TOKEN and np.isfinite(out.wav).all() and np.abs(out.wav).max() > 0
    evidence = applied.evidence(pipeline)[variant.name]
    assert isinstance(evidence, dict) and evidence
    engaged, why = variant.engaged(evidence)
    assert isinstance(engaged, bool) and why
    if variant.lossless:
        assert torch.equal(out.tokens, baseline_tokens), f"{name} is declared lossless but changed the tokens"


def test_claims_point_the_right_way():
    known = variants.registry(aliases=True)
    assert known["no-grad"].claims[0].low > 1  # the claim is that inference mode (the baseline) is faster
    assert known["warmup"].claims[0].metric == "cold_start"
    assert known["token-budget"].claims[0].metric == known["alignment-analyzer"].claims[0].metric == "time_to_stop"
    assert {known[n].claims[0].metric for n in ("bnb-int8", "bnb-nf4", "torch-int8-t3", "cpu-offload")} == \
        {"resident_memory"}
    assert known["cuda-cache"].claims[0].metric == "reserved_memory"
    assert known["torch-int8-t3"] is known["cpu-int8-t3"]


def test_designs_follow_process_wide_changes():
    for name in variants.registry():
        design, why = variants.design(name)
        expected = "cross-process" if name in ("warmup", "cuda-cache") else "in-process"
        assert design == expected and why, name


def test_alignment_analyzer_leaves_no_hooks_and_forcing_wins(tiny_model, baseline_tokens):
    layers = tiny_model.t3.tfmr.layers
    hooks = lambda: [len(layer.self_attn._forward_hooks) for layer in layers]  # noqa: E731
    pipeline = Pipeline(tiny_model)
    Pipeline(tiny_model).synthesize(TEXT, seed=SEED, n_tokens=4)  # transformers installs its own hooks once
    before = hooks()
    applied = variants.apply(pipeline, "alignment-analyzer")
    for _ in range(3):
        out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
        assert hooks() == before
        assert tiny_model.t3.tfmr.config._attn_implementation == "sdpa"
    ev = applied.evidence(pipeline)["alignment-analyzer"]
    assert ev["syntheses"] == 3 and ev["hooks_installed"] == 3 and ev["steps"] == N
    assert ev["forced_run"] and ev["attention_during_analysis"] == "eager"
    assert torch.equal(out.tokens, baseline_tokens)  # forced: it only observes
    pipeline.synthesize(TEXT, seed=SEED, sampling=Sampling(max_new_tokens=20))
    ev = applied.evidence(pipeline)["alignment-analyzer"]
    assert not ev["forced_run"] and 0 < ev["steps"] <= 20 and hooks() == before


def test_compatible_variants_compose_in_any_order(tiny_model, baseline_tokens):
    pipeline = Pipeline(tiny_model)
    applied = variants.apply(pipeline, "alignment-analyzer+static-kv-cache")
    out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
    ev = applied.evidence(pipeline)
    assert ev["static-kv-cache"]["cache"] == "StaticCache" and ev["alignment-analyzer"]["steps"] == N
    assert torch.equal(out.tokens, baseline_tokens)


def test_precision_composes_with_token_budget():
    pipeline = Pipeline(sources.load("tiny", device="cpu"))
    applied = variants.apply(pipeline, "bf16+token-budget")
    out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
    assert len(out.wav) == N * SAMPLES_PER_TOKEN and out.extra["chunks"] == 2
    ev = applied.evidence(pipeline)
    assert set(ev["bf16"]["t3_dtypes"]) == {"bfloat16"} and set(ev["bf16"]["vocoder_dtypes"]) == {"float32"}
    assert ev["token-budget"]["last"]["chunks"] == 2 and sum(ev["token-budget"]["last"]["tokens"]) == N
    assert variants.registry()["token-budget"].engaged(ev["token-budget"])[0]


def test_each_variants_load_time_work_is_timed_by_the_clock_it_is_given():
    ticks = iter(range(100))
    applied = variants.apply(Pipeline(sources.load("tiny", device="cpu")), "bf16+token-budget",
                             clock=lambda: next(ticks))
    assert applied.seconds == {"bf16": 2, "token-budget": 2}  # one tick around its apply, one around its after_load


@pytest.mark.parametrize("spec", ["cpu-int8-t3+bf16", "flash-attention+static-kv-cache",
                                  "alignment-analyzer+flash-attention"])
def test_incompatible_pair_names_both(spec):
    a, b = spec.split("+")
    with pytest.raises(UserError, match=f"{a} and {b}|{b} and {a}"):
        variants.parse(spec)


def test_no_grad_really_leaves_inference_mode_and_a_baseline_copy_keeps_it(tiny_model):
    no_grad, base = Pipeline(tiny_model), Pipeline(tiny_model)
    applied = variants.apply(no_grad, "no-grad")
    seen = []
    base.wrap("text_to_tokens", lambda inner, text: (seen.append(torch.is_inference_mode_enabled()), inner(text))[1],
              by="test")
    for p in (no_grad, base, no_grad):  # interleaved in one process, as the in-process design runs them
        p.synthesize(TEXT, seed=SEED, n_tokens=4)
    ev = applied.evidence(no_grad)["no-grad"]
    assert (ev["calls_outside_inference_mode"], ev["calls_inside_inference_mode"]) == (2, 0) and seen == [True]
    assert variants.registry()["no-grad"].engaged(ev)[0]


def test_cpu_int8_quantizes_every_transformer_linear():
    pipeline = Pipeline(sources.load("tiny", device="cpu"))
    linears = sum(isinstance(m, torch.nn.Linear) for m in pipeline.model.t3.tfmr.modules())
    applied = variants.apply(pipeline, "torch-int8-t3")
    ev = applied.evidence(pipeline)["cpu-int8-t3"]["t3.tfmr"]
    assert sum(ev["linear_types"].values()) == linears > 0
    assert ev["linear_mb_after"] < ev["linear_mb_before"] / 3
    assert sum(isinstance(m, torch.nn.Linear) for m in pipeline.model.t3.tfmr.modules()) == 0


def test_token_budget_never_cuts_a_forced_length():
    assert split_forced(7, ["a" * 10, "b" * 30]) == [2, 5]
    assert sum(split_forced(101, ["x" * 3, "y" * 50, "z" * 17])) == 101
    assert budget("x" * 40, 1000) == 125 and budget("x" * 4000, 1000) == 1000


def test_list_prints_every_variant_and_where_it_cannot_run(capsys):
    assert cli.main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, v in variants.registry().items():
        assert name in out and all(" ".join(c.text.split()) in out for c in v.claims)
    if not torch.cuda.is_available():
        assert "not applicable: requires CUDA" in out
