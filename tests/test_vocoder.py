"""fast-vocoder: HiFT's 1-D convolutions as channels-last 2-D ones of height 1 (engine.vocoder)
speak upstream's waveform within float32 rounding, in a synthesis and in a stream, and touch
no other copy of the model; bf16-vocoder's rows in bfloat16 within bfloat16 rounding, their
audio float32."""
import copy

import pytest
import torch
from chatterbox.models.s3gen.hifigan import Snake

from ttsopt import variants
from ttsopt.engine import vocoder
from ttsopt.engine.pipeline import SAMPLES_PER_TOKEN, Pipeline
from ttsopt.engine.stream import synthesize_stream

TEXT = "Hello world."


def _own_copy(tiny_model):
    model = copy.copy(tiny_model)
    model.tts = copy.deepcopy(tiny_model.tts)
    return model


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).norm() / b.norm()).item()


def _beside_upstream(tiny_model, spec: str):
    """(upstream's synthesis, SPEC's, the applied variants, SPEC's pipeline) of one text and seed."""
    base = Pipeline(tiny_model).synthesize(TEXT, seed=4, n_tokens=20)
    pipeline = Pipeline(_own_copy(tiny_model))
    applied = variants.apply(pipeline, spec)
    out = pipeline.synthesize(TEXT, seed=4, n_tokens=20)
    assert torch.equal(out.tokens, base.tokens) and out.wav.shape == base.wav.shape and out.wav.dtype == base.wav.dtype
    return base, out, applied, pipeline


def test_the_rows_speak_upstreams_waveform_within_float32_rounding(tiny_model):
    base, out, applied, pipeline = _beside_upstream(tiny_model, "fast-vocoder")
    assert 0 < _rel(out.wav, base.wav) < 1e-5  # the same product, its sums in another order
    evidence = applied.evidence(pipeline)["fast-vocoder"]
    assert evidence["calls"] == 1 and evidence["convolutions"] == evidence["weights_channels_last"] > 0
    assert evidence["snakes"] > 0
    engaged, why = applied.engaged(applied.evidence(pipeline))
    assert engaged and "1 vocoder call" in why


@pytest.mark.parametrize("spec, bound", [("fast-vocoder", 1e-5), ("fast-vocoder+bf16-vocoder", 0.05)])
def test_a_stream_through_the_rows_speaks_upstreams_chunks_within_their_precision(tiny_model, spec, bound):
    upstream = synthesize_stream(Pipeline(tiny_model), TEXT, seed=2, n_tokens=25, chunk_tokens=10)
    pipeline = Pipeline(_own_copy(tiny_model))
    variants.apply(pipeline, spec)
    rows = synthesize_stream(pipeline, TEXT, seed=2, n_tokens=25, chunk_tokens=10)
    assert [len(c) for c in rows.chunks] == [len(c) for c in upstream.chunks] and len(rows.chunks) == 3
    assert sum(len(c) for c in rows.chunks) == 25 * SAMPLES_PER_TOKEN
    for mine, theirs in zip(rows.chunks, upstream.chunks, strict=True):
        assert mine.dtype == theirs.dtype and _rel(mine, theirs) < bound
    assert vocoder.evidence(pipeline.model.s3gen.mel2wav)["calls"] == 3


def test_snake_in_one_buffer_is_upstreams_snake_bit_for_bit():
    torch.manual_seed(0)
    snake = Snake(8)
    with torch.no_grad():
        snake.alpha.uniform_(0.2, 3.0)
    x = torch.randn(2, 8, 300) * 4
    row = vocoder.RowSnake(snake)(vocoder._rows(x))
    assert torch.equal(row.squeeze(2), snake(x))
    logscale = Snake(8, alpha_logscale=True)
    assert torch.equal(vocoder.RowSnake(logscale)(vocoder._rows(x)).squeeze(2), logscale(x))


@pytest.mark.parametrize("kind, kw", [
    ("conv", dict(kernel_size=11, dilation=5, padding=25)),
    ("conv", dict(kernel_size=30, stride=15, padding=7)),
    ("conv", dict(kernel_size=1)),
    ("transposed", dict(kernel_size=16, stride=8, padding=4)),
])
def test_a_weight_normalised_convolution_keeps_its_weight_and_output_as_a_row(kind, kw):
    torch.manual_seed(1)
    cls = torch.nn.Conv1d if kind == "conv" else torch.nn.ConvTranspose1d
    conv = torch.nn.utils.parametrizations.weight_norm(cls(12, 6, **kw))
    row = vocoder.RowConv(conv)
    assert torch.equal(row.weight.squeeze(2), conv.weight)  # folded once, as upstream computes it per call
    assert row.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 12, 400)
    with torch.no_grad():
        want, got = conv(x), row(vocoder._rows(x)).squeeze(2)
    assert got.shape == want.shape and _rel(got, want) < 1e-5


def test_converting_a_copy_leaves_the_original_upstreams_and_a_second_call_changes_nothing(tiny_model):
    original = tiny_model.tts.s3gen.mel2wav
    model = _own_copy(tiny_model)
    hift = model.tts.s3gen.mel2wav
    first = vocoder.use_rows(hift)
    assert vocoder.use_rows(hift) is first
    assert sum(isinstance(m, vocoder.RowConv) for m in hift.modules()) == first.converted["convolutions"]
    assert vocoder.evidence(original) == {"decode": "upstream's"}
    assert not any(isinstance(m, (vocoder.RowConv, vocoder.RowSnake)) for m in original.modules())
    # Weight normalisation's classes are shared with the copy; the original still computes its weights.
    assert original.conv_pre.weight.shape == original.conv_pre.parametrizations.weight.original1.shape


def test_a_module_that_is_not_hift_is_refused_saying_what_it_lacks():
    with pytest.raises(TypeError, match="no conv_pre"):
        vocoder.use_rows(torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3)))


def test_the_rows_in_bfloat16_speak_upstreams_waveform_within_bfloat16_rounding(tiny_model):
    base, out, applied, pipeline = _beside_upstream(tiny_model, "bf16-vocoder")
    assert 1e-4 < _rel(out.wav, base.wav) < 0.05  # bfloat16's 8 bits of mantissa show, and stay small
    evidence = applied.evidence(pipeline)["bf16-vocoder"]
    assert evidence["dtype"] == "bfloat16" and evidence["calls"] == 1
    assert evidence["convolutions"] == evidence["weights_in_dtype"] == evidence["weights_channels_last"] > 0
    hift = pipeline.model.s3gen.mel2wav
    assert all(p.dtype == torch.float32 for p in hift.f0_predictor.parameters())  # what upstream's decode keeps
    engaged, why = applied.engaged(applied.evidence(pipeline))
    assert engaged and "in bfloat16" in why


def test_the_mel_goes_in_at_the_f0_predictors_dtype_not_the_rows_or_the_first_parameters(tiny_model):
    hift = copy.deepcopy(tiny_model.s3gen.mel2wav)
    vocoder.use_dtype(hift, torch.bfloat16)
    hift.conv_pre.to(torch.float16)  # a row of another precision than the rows around it: not what the mel meets
    assert vocoder.mel_dtype(hift) == torch.float32
    hift.f0_predictor.to(torch.bfloat16)
    assert next(hift.parameters()).dtype == torch.float32 and vocoder.mel_dtype(hift) == torch.bfloat16


@pytest.mark.parametrize("flags, units", [({"avx2"}, []), ({"avx2", "amx_bf16"}, ["amx_bf16"])])
def test_a_bfloat16_run_on_a_cpu_without_its_units_says_it_is_emulated(monkeypatch, flags, units):
    from types import SimpleNamespace

    from ttsopt.measure.env import BF16_UNITS
    from ttsopt.variants import base
    monkeypatch.setattr(base, "cpu_flags", lambda: flags)
    ev = base.native_units(SimpleNamespace(device=torch.device("cpu")), BF16_UNITS, torch.bfloat16)
    assert ev["cpu_native_units"] == units
    assert ("bfloat16 arithmetic is emulated" in ev.get("warning", "")) is (not units)
    assert base.native_units(SimpleNamespace(device=torch.device("cuda")), BF16_UNITS, torch.bfloat16) == {}
