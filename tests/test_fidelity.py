"""Fidelity against the baseline: zero (or float rounding) for lossless variants, visible loss
for lossy ones, and metrics whose direction is pinned."""
import numpy as np
import pytest
import torch

from ttsopt import variants
from ttsopt.engine import sources
from ttsopt.engine.pipeline import Pipeline
from ttsopt.experiment import probes
from ttsopt.measure import fidelity


def test_metric_directions():
    a = torch.tensor([1, 2, 3, 4])
    assert fidelity.token_match(a, a) == 1.0
    assert fidelity.token_match(a, torch.tensor([1, 2, 9, 4])) == 0.75
    assert fidelity.token_match(a, a[:2]) == 0.5  # a shorter output is a mismatch, not a pass
    x = np.sin(np.linspace(0, 20, 2000))
    assert fidelity.snr_db(x, x) == float("inf")
    assert 19 < fidelity.snr_db(x, x + 0.1 * x) < 21  # 10% error is 20 dB
    assert fidelity.rel_error(torch.ones(4), torch.ones(4) * 1.5) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    base = Pipeline(tiny_model)
    out = base.synthesize("Hello world.", seed=0, n_tokens=12)
    probed = probes.probe(base, "Hello world.", out.tokens, seed=0)
    directory = tmp_path_factory.mktemp("reference")
    probes.save_reference(directory, "p", 0, out, probed)
    return probes.load_reference(directory, "p", 0)


@pytest.mark.parametrize("spec, lossless", [("fast-t3", True), ("static-kv-cache", True), ("cfm-steps-2", False)])
def test_variant_fidelity_against_baseline(reference, spec, lossless):
    pipeline = Pipeline(sources.load("tiny", device="cpu"))
    variants.apply(pipeline, spec)
    out = pipeline.synthesize("Hello world.", seed=0, n_tokens=12)
    probed, _ = fidelity.compare_probe(reference, probes.probe(pipeline, "Hello world.", reference["tokens"], seed=0))
    result = {**fidelity.compare_output(reference["tokens"], reference["wav"].numpy(), out.tokens, out.wav), **probed}
    if lossless:
        assert result["token_match"] == 1.0
        assert result["logit_rel_err"] < 1e-4
        assert result["mel_rel_err"] < 1e-4
        assert result["wav_snr_db"] > 60
    else:
        assert result["mel_rel_err"] > 1e-3  # fewer flow steps change the mel, and it shows


@pytest.mark.parametrize("spec, low, high", [("fast-vocoder", 0.0, 1e-5), ("bf16-vocoder", 1e-4, 0.05)])
def test_the_vocoders_own_change_shows_on_the_baselines_mel(reference, spec, low, high):
    pipeline = Pipeline(sources.load("tiny", device="cpu"))
    variants.apply(pipeline, spec)
    probed = probes.probe(pipeline, "Hello world.", reference["tokens"], seed=0, mel=reference["mel"])
    metrics, _ = fidelity.compare_probe(reference, probed)
    assert metrics["mel_rel_err"] == 0.0  # the flow is untouched: its mel is the baseline's
    assert low <= metrics["vocoder_rel_err"] < high
    without = {k: v for k, v in reference.items() if k != "mel_wav"}  # a reference stored before this probe
    assert "vocoder_rel_err" not in fidelity.compare_probe(without, probed)[0]


def test_spec_pipelines_apply_the_named_change_after_the_variants_and_refuse_an_unknown_one():
    seen = []
    plain, changed = probes.spec_pipelines(["no-grad", "no-grad@mark"], "original", "tiny",
                                           {"mark": lambda p: seen.append(p)})
    assert seen == [changed] and plain is not changed and plain.model is not changed.model
    with pytest.raises(SystemExit, match="after @ only mark is known"):
        probes.spec_pipelines(["no-grad@other"], "original", "tiny", {"mark": lambda p: None})
