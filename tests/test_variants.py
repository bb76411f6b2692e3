import importlib
import re

import numpy as np
import pytest
import torch

from ttsopt import cli, models, variants
from ttsopt.errors import UserError
from ttsopt.pipeline import SAMPLES_PER_TOKEN, Pipeline, Sampling
from ttsopt.variants import NotApplicable
from ttsopt.variants.token_budget import budget, split_forced

# The assessment's eleven optimizations (other modules hold variants tested by their own files).
ELEVEN = ("alignment", "flash_attention", "precision", "inference_mode", "warmup", "vocos_vocoder",
          "token_budget", "quantize", "static_kv", "offload", "cuda_cache")
NAMES = sorted(v.name for m in ELEVEN for v in importlib.import_module(f"ttsopt.variants.{m}").VARIANTS)
TEXT = "Hello world. How are you?"
SEED, N = 3, 12
# Variants known to change only the pipeline share the session's model; any other variant
# (weights cast, modules replaced or moved) gets a model of its own.
PIPELINE_ONLY = {"alignment-analyzer", "no-grad", "static-kv-cache", "token-budget", "vocos", "warmup", "cuda-cache"}


@pytest.fixture(scope="module")
def baseline_tokens(tiny_model):
    return Pipeline(tiny_model).synthesize(TEXT, seed=SEED, n_tokens=N).tokens


def pipeline_for(name, tiny_model):
    return Pipeline(tiny_model if name in PIPELINE_ONLY else models.load("tiny", device="cpu"))


@pytest.mark.parametrize("name", NAMES)
def test_variant_applies_or_says_why_not(name, tiny_model, baseline_tokens):
    variant = variants.registry()[name]
    assert variant.claim.startswith("claimed ")  # the assessment's claim, recorded as a fact
    reason = variant.check(None)
    if reason:
        with pytest.raises(NotApplicable, match=re.escape(reason.split("(")[0].strip())):
            variants.apply(Pipeline(tiny_model), name)
        return
    pipeline = pipeline_for(name, tiny_model)
    applied = variants.apply(pipeline, name)
    out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
    assert len(out.wav) == N * SAMPLES_PER_TOKEN and np.isfinite(out.wav).all() and np.abs(out.wav).max() > 0
    evidence = applied.evidence(pipeline)[name]
    assert isinstance(evidence, dict) and evidence
    if variant.lossless:
        assert torch.equal(out.tokens, baseline_tokens), f"{name} is declared lossless but changed the tokens"


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
    pipeline = Pipeline(models.load("tiny", device="cpu"))
    applied = variants.apply(pipeline, "bf16+token-budget")
    out = pipeline.synthesize(TEXT, seed=SEED, n_tokens=N)
    assert len(out.wav) == N * SAMPLES_PER_TOKEN and out.extra["chunks"] == 2
    ev = applied.evidence(pipeline)
    assert set(ev["bf16"]["t3_dtypes"]) == {"bfloat16"} and set(ev["bf16"]["vocoder_dtypes"]) == {"float32"}
    assert ev["token-budget"]["chunks"] == 2 and sum(ev["token-budget"]["tokens"]) == N


@pytest.mark.parametrize("spec", ["torch-int8-t3+bf16", "flash-attention+static-kv-cache",
                                  "alignment-analyzer+flash-attention"])
def test_incompatible_pair_names_both(spec):
    a, b = spec.split("+")
    with pytest.raises(UserError, match=f"{a} and {b}|{b} and {a}"):
        variants.parse(spec)


def test_no_grad_really_leaves_inference_mode(tiny_model):
    seen = {}
    for spec in ("baseline", "no-grad"):
        pipeline = Pipeline(tiny_model)
        variants.apply(pipeline, spec)
        to_tokens = pipeline.text_to_tokens
        pipeline.text_to_tokens = lambda text, f=to_tokens, s=spec: (
            seen.__setitem__(s, torch.is_inference_mode_enabled()), f(text))[1]
        pipeline.synthesize(TEXT, seed=SEED, n_tokens=4)
    assert seen == {"baseline": True, "no-grad": False}


def test_torch_int8_quantizes_every_transformer_linear():
    pipeline = Pipeline(models.load("tiny", device="cpu"))
    linears = sum(isinstance(m, torch.nn.Linear) for m in pipeline.model.t3.tfmr.modules())
    applied = variants.apply(pipeline, "torch-int8-t3")
    ev = applied.evidence(pipeline)["torch-int8-t3"]
    assert ev["modules_quantized"] == linears > 0
    assert ev["linear_weight_mb_after"] < ev["linear_weight_mb_before"] / 3
    assert sum(isinstance(m, torch.nn.Linear) for m in pipeline.model.t3.tfmr.modules()) == 0


def test_token_budget_never_cuts_a_forced_length():
    assert split_forced(7, ["a" * 10, "b" * 30]) == [2, 5]
    assert sum(split_forced(101, ["x" * 3, "y" * 50, "z" * 17])) == 101
    assert budget("x" * 40, 1000) == 125 and budget("x" * 4000, 1000) == 1000


def test_list_prints_every_variant_and_where_it_cannot_run(capsys):
    assert cli.main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, v in variants.registry().items():
        assert name in out and " ".join(v.claim.split()) in out
    if not torch.cuda.is_available():
        assert "not applicable: requires CUDA" in out
