"""The turbo model as the workbench runs it: the same tokens and audio as upstream's
`ChatterboxTurboTTS` for the same seed, its own files, voice rule and sampling defaults, and
variants that say whether they are made for it."""
import contextlib
import copy
import dataclasses
import inspect
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from chatterbox.tts import ChatterboxTTS
from chatterbox.tts_turbo import ChatterboxTurboTTS

from ttsopt import variants
from ttsopt.core import params
from ttsopt.engine import sources
from ttsopt.engine.audio import ReferenceError
from ttsopt.engine.pipeline import SAMPLES_PER_TOKEN, Pipeline, Sampling, TextError

STOP = 6562


@pytest.fixture(scope="module")
def turbo_model():
    return sources.load("tiny", device="cpu", seed=0, model="turbo")


@pytest.fixture()
def turbo(turbo_model):
    return Pipeline(turbo_model)


@contextlib.contextmanager
def stopping_early(model, boost: float = 5.0):
    """Random weights almost never stop; a larger stop-token bias makes T3 stop within tens of
    tokens, so a natural stop can be compared with upstream's in a test's time."""
    bias = model.t3.speech_head.bias
    before = bias[STOP].item()
    with torch.no_grad():
        bias[STOP] += boost
    try:
        yield
    finally:
        with torch.no_grad():
            bias[STOP] = before


def test_the_model_is_upstreams_turbo_class_with_its_own_decoder(turbo_model):
    assert turbo_model.name == "turbo"
    assert isinstance(turbo_model.tts, ChatterboxTurboTTS)
    assert turbo_model.s3gen.meanflow and turbo_model.t3.is_gpt
    assert not hasattr(turbo_model.t3.tfmr, "wte")  # dropped, as upstream's from_local does


def test_sampling_defaults_are_each_models_generate_defaults():
    for cls, name in ((ChatterboxTTS, "original"), (ChatterboxTurboTTS, "turbo")):
        defaults = {k: p.default for k, p in inspect.signature(cls.generate).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        ours = dataclasses.asdict(Sampling.for_model(name))
        shared = {k: v for k, v in defaults.items() if k in ours}
        assert shared == {k: ours[k] for k in shared}, name
        assert {"temperature", "top_p", "repetition_penalty", "cfg_weight", "exaggeration"} <= set(shared)
    assert Sampling.for_model("turbo").top_k == 1000


@pytest.mark.parametrize("limit", [6, 25])
def test_t3_tokens_equal_upstream_inference_turbo(turbo, limit):
    s = dataclasses.replace(turbo.sampling, max_new_tokens=limit)
    ours = turbo.synthesize("Hello world.", seed=3, sampling=s).raw_tokens
    torch.manual_seed(3)
    with torch.inference_mode():
        upstream = turbo.model.t3.inference_turbo(t3_cond=turbo.model.tts.conds.t3,
                                                  text_tokens=turbo.text_to_tokens("Hello world."), max_gen_len=limit)
    assert upstream.size(1) == limit + 1  # random weights: no stop, upstream's whole budget
    assert torch.equal(ours, upstream[0])


def test_a_natural_stop_gives_upstream_generates_audio_exactly(turbo):
    with stopping_early(turbo.model):
        torch.manual_seed(7)
        upstream = turbo.model.tts.generate("Hello world.")[0].numpy()
        ours = turbo.synthesize("Hello world.", seed=7)
    assert ours.raw_tokens[-1].item() == STOP and 3 < ours.raw_tokens.numel() < 200
    assert ours.wav.shape == upstream.shape
    assert np.array_equal(ours.wav, upstream)


def test_a_forced_length_renders_the_tokens_and_upstreams_three_silence_tokens(turbo):
    out = turbo.synthesize("Hello world.", seed=1, n_tokens=12)
    assert out.raw_tokens.numel() == 13 and out.raw_tokens[-1].item() == STOP
    assert (out.raw_tokens[:-1] < 6561).all()
    assert out.n_tokens == 15 and len(out.wav) == 15 * SAMPLES_PER_TOKEN


def test_a_forced_length_runs_the_forwards_a_natural_stop_would(turbo):
    out = turbo.synthesize("Hello world.", seed=1, n_tokens=9)
    assert out.t3_forwards == 9


def test_turbo_weights_round_trip_through_their_own_layout(turbo, turbo_model, tmp_path):
    folder = sources.save_local(turbo_model, tmp_path / "turbo")
    assert {"t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors", "ve.safetensors", "tokenizer.json",
            "tokenizer_config.json", "conds.pt"} <= {p.name for p in folder.iterdir()}
    reloaded = Pipeline(sources.load(f"local:{folder}", device="cpu", model="turbo"))
    a = turbo.synthesize("Round trip.", seed=2, n_tokens=10)
    b = reloaded.synthesize("Round trip.", seed=2, n_tokens=10)
    assert torch.equal(a.tokens, b.tokens)
    assert np.allclose(a.wav, b.wav, atol=1e-5)
    with pytest.raises(sources.SourceError, match="holds the turbo model's weights.*add --model turbo"):
        sources.load(f"local:{folder}", device="cpu")


def test_a_reference_of_five_seconds_or_less_is_refused_for_turbo(turbo):
    with pytest.raises(ReferenceError, match="this model needs more than 5 s"):
        turbo.synthesize("Hello.", n_tokens=4, reference_wav=sources.REFERENCE_WAV)  # 4.28 s


def test_text_longer_than_the_gpt2_tokenizer_reads_is_refused_not_truncated(turbo):
    with pytest.raises(TextError, match="reads at most 1024"):
        turbo.text_to_tokens("word " * 1100)


def test_the_generated_gpt2_tokenizer_reads_the_prompts_a_word_a_token_and_any_text_back(tmp_path):
    from tokenizers import pre_tokenizers
    tokenizer = sources._turbo_tokenizer(sources.write_gpt2_tokenizer(tmp_path))
    words = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in sources.gpt2_corpus():
        assert len(tokenizer(text)["input_ids"]) == len(words.pre_tokenize_str(text)), text
    for text in ["Zürich, São Paulo — quixotic xylophones 😀", "tab\tand\nnewline"]:  # bytes of no prompt
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text and len(ids) > len(words.pre_tokenize_str(text))
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # after every other token, as in GPT-2


def test_the_cli_knows_the_same_models_as_the_sources():
    assert params.MODELS == sources.MODELS


def test_every_variant_runs_on_turbo_or_says_why_not():
    fresh = sources.load("tiny", device="cpu", seed=0, model="turbo")  # variants change weights in place
    for name, v in variants.registry().items():
        turbo_model = copy.deepcopy(fresh)
        reason = v.applies_to("turbo")
        if reason is not None:
            assert "turbo" in reason.lower() or "original" in reason
            with pytest.raises(variants.NotApplicable, match=name):
                variants.apply(Pipeline(turbo_model), name)
            continue
        if v.check(None):  # CUDA-only and the like: nothing to run on this machine
            continue
        pipeline = Pipeline(turbo_model)
        applied = variants.apply(pipeline, name)
        pipeline.synthesize("Hello world.", seed=0, n_tokens=6)
        assert applied.evidence(pipeline)[name], name


def test_cfm_steps_1_is_turbos_trade_off_and_not_the_originals(turbo, tiny_model):
    applied = variants.apply(turbo, "cfm-steps-1")
    turbo.synthesize("Hello world.", seed=0, n_tokens=6)
    evidence = applied.evidence(turbo)["cfm-steps-1"]
    assert evidence["n_cfm_timesteps"] == 1 and evidence["upstream"] == 2
    assert "mean-flow decoder takes 2 steps already" in variants.unavailable("cfm-steps-4", model="turbo")
    assert "not a trade-off upstream offers" in variants.unavailable("cfm-steps-1", Pipeline(tiny_model))


def test_turbos_estimator_stays_bfloat16_where_the_originals_takes_int8(monkeypatch):
    """On a CPU with avx512_bf16 and no AMX Turbo's two mean-flow steps keep a bfloat16 estimator,
    its attention as three products; the original's ten guided steps take int8 linears there."""
    from ttsopt.variants import fast as fast_variants
    monkeypatch.setattr(fast_variants, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    pipeline = Pipeline(sources.load("tiny", device="cpu", seed=0, model="turbo"))  # its own: the cast stays there
    applied = variants.apply(pipeline, "fast-s3gen")
    pipeline.synthesize("Hello world.", seed=0, n_tokens=6)
    evidence = applied.evidence(pipeline)["fast-s3gen"]
    assert evidence["precision"] == "bfloat16" and evidence["attention"] == "products"
    assert set(evidence["estimator_dtypes"]) == {"bfloat16"}
    assert set(evidence["attention_processors"]) == {"ProductAttention"}
    assert fast_variants.flow_precision("cpu", {"avx512_bf16"}, "original")[0] == "int8"
    engaged, why = applied.engaged(applied.evidence(pipeline))
    assert engaged and "as three products" in why, why


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "ttsopt", *argv], capture_output=True, text=True, timeout=timeout)


def test_cli_synth_speaks_with_turbo(tmp_path):
    out = tmp_path / "t.wav"
    proc = _cli("synth", "Hello world.", "--model", "turbo", "--source", "tiny", "--tokens", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "turbo model" in proc.stdout
    assert "S3 Token -> Mel" not in proc.stdout + proc.stderr  # upstream's per-call print is kept off the terminal


def test_cli_refuses_an_unknown_model_before_loading_anything():
    proc = _cli("synth", "Hello.", "--model", "nosuch", "--out", "x.wav", timeout=60)
    assert proc.returncode == 2 and "unknown model 'nosuch'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_list_says_per_model_what_runs():
    proc = _cli("list", "--model", "turbo", "--json", timeout=120)
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["no-grad"]["here"] == "yes" and "turbo" in rows["no-grad"]["models"]
    assert rows["fast-s3gen"]["here"] == "yes"
    assert rows["compiled-t3"]["here"].startswith("not applicable: the compiled step is the Llama layer")
    assert rows["cfm-steps-1"]["here"] == "yes" and rows["cpu-int8-t3"]["here"] == "yes"
    assert rows["fast-t3"]["here"] == "yes"
    proc = _cli("list", "--model", "multilingual", "--json", timeout=120)
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["fast-t3"]["here"] == "yes" and rows["cpu-int8-t3"]["here"] == "yes"  # the analyzer comes along
    assert "alignment analyzer" in rows["flash-attention"]["here"]


def test_cli_models_prints_each_models_gain_and_the_report_shows_it_beside_a_suite(tmp_path):
    suite = tmp_path / "suite"
    proc = _cli("models", "--source", "tiny", "--tokens", "30", "--trials", "2", "--stream",
                "--save", str(suite / "models"))
    assert proc.returncode == 0, proc.stderr
    assert "turbo gain" in proc.stdout and "multilingual gain" in proc.stdout and "(n = 2)" in proc.stdout
    assert "first audio when streaming s" in proc.stdout  # every model streamed from its own upstream loop
    assert "S3 Token -> Mel" not in proc.stdout
    rows = [json.loads(line) for line in (suite / "models" / "models.jsonl").read_text().splitlines()]
    trials = [r for r in rows if r["phase"] == "trial"]
    assert sorted(r["model"] for r in trials) == ["multilingual"] * 2 + ["original"] * 2 + ["turbo"] * 2
    assert [r["pair"] for r in trials if r["model"] == "turbo"] == [0, 1]
    streams = [r for r in rows if r["phase"] == "stream"]
    assert sorted(r["model"] for r in streams) == sorted(r["model"] for r in trials)
    assert all(r["x_chunks"] >= 2 and 0 < r["x_first_audio_s"] < r["wall_s"] for r in streams)

    from ttsopt.core import records
    from ttsopt.report import html, table
    page = html.build(suite).read_text()
    assert '<section id="models">' in page and "turbo gain" in page and "30 speech tokens, 2 trial(s)" in page
    assert "first audio when streaming s" in page
    assert table.table(records.load(suite))[0].empty  # the comparison is no run of a suite


def test_audio_captures_the_turbo_flow_print_in_a_buffer_only(turbo):
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        turbo.synthesize("Hello world.", seed=0, n_tokens=4)
    assert captured.getvalue() == ""


def test_cli_bench_runs_turbos_int8_path_against_its_own_baseline():
    proc = _cli("bench", "--model", "turbo", "--source", "tiny", "--tokens", "6", "--trials", "2")
    assert proc.returncode == 0, proc.stderr
    assert "bench: turbo model" in proc.stdout
    assert "combo fast-t3+cpu-int8-t3+cpu-int8-head+fast-s3gen+fast-vocoder" in proc.stdout
    assert "dynamic.modules.linear.Linear" in proc.stdout  # GPT-2's Conv1D projections were quantized
    assert "token match rate" in proc.stdout and "T3 step memory floor" in proc.stdout


@pytest.mark.parametrize("argv, message", [
    (("--batch", "2"), "built for the original model's T3 only"),
    (("--combo", "compiled-t3"), "the compiled step is the Llama layer"),
])
def test_cli_bench_refuses_for_turbo_what_is_not_built_for_it(argv, message):
    proc = _cli("bench", "--model", "turbo", "--source", "tiny", *argv, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_gpt2_projections_become_the_linears_they_are_before_int8():
    from transformers.pytorch_utils import Conv1D

    from ttsopt.engine import quant
    layer = torch.nn.Sequential(Conv1D(24, 16))
    x = torch.randn(5, 16)
    expected = layer(x)
    weight, bias = layer[0].weight, layer[0].bias
    assert quant.as_linears(layer) == 1 and isinstance(layer[0], torch.nn.Linear)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert layer[0].weight.shape == (24, 16) and layer[0].weight.data_ptr() == weight.data_ptr()  # a view, no copy
    assert layer[0].bias is bias


def test_gpt2_projections_quantize_as_their_weights_copied_into_rows_would():
    """`as_linears` leaves each weight a transposed view; quantizing it gives the very int8 weights
    and outputs a row-major copy gives."""
    from transformers.pytorch_utils import Conv1D

    from ttsopt.engine import quant
    torch.manual_seed(0)
    viewed = torch.nn.Sequential(Conv1D(48, 32))
    copied = copy.deepcopy(viewed)
    quant.as_linears(copied)
    copied[0].weight = torch.nn.Parameter(copied[0].weight.detach().contiguous(), requires_grad=False)
    quant.quantize_linears(viewed), quant.quantize_linears(copied)
    x = torch.randn(3, 32)
    assert torch.equal(quant.unpacked(viewed[0])[0].int_repr(), quant.unpacked(copied[0])[0].int_repr())
    assert torch.equal(viewed(x), copied(x))


def test_lora_free_diffusers_linears_become_plain_linears_sharing_their_weights():
    """The flow estimator's feed-forward outputs are LoRACompatibleLinear, which quantize_dynamic
    (exact types) would leave in float32."""
    from diffusers.models.lora import LoRACompatibleLinear

    from ttsopt.engine import quant
    layer = torch.nn.Sequential(LoRACompatibleLinear(16, 24))
    weight, x = layer[0].weight, torch.randn(5, 16)
    expected = layer(x)
    assert quant.as_linears(layer) == 1 and type(layer[0]) is torch.nn.Linear
    assert layer[0].weight is weight and torch.equal(layer(x), expected)


@pytest.mark.parametrize("forced", [True, False])
def test_fast_t3_gives_turbos_upstream_tokens_for_the_same_seed(turbo_model, forced):
    s = dataclasses.replace(Sampling.for_model("turbo"), max_new_tokens=30)
    base = Pipeline(turbo_model).synthesize("Hello world.", seed=5, sampling=s, n_tokens=20 if forced else None)
    fast = Pipeline(turbo_model)
    applied = variants.apply(fast, "fast-t3")
    out = fast.synthesize("Hello world.", seed=5, sampling=s, n_tokens=20 if forced else None)
    assert torch.equal(out.raw_tokens, base.raw_tokens)
    assert out.t3_forwards == base.t3_forwards
    evidence = applied.evidence(fast)["fast-t3"]
    assert evidence["t3"] == "FastTurboT3" and evidence["steps"] > 0 and evidence["layer_step"]


def test_fast_t3_gives_turbos_upstream_tokens_at_a_natural_stop(turbo_model):
    with stopping_early(turbo_model):
        base = Pipeline(turbo_model).synthesize("Hello world.", seed=7)
        fast = Pipeline(turbo_model)
        variants.apply(fast, "fast-t3")
        out = fast.synthesize("Hello world.", seed=7)
    assert out.raw_tokens[-1].item() == STOP and torch.equal(out.raw_tokens, base.raw_tokens)


def test_fast_t3_on_int8_gpt2_gives_the_int8_upstream_tokens(int8_then_fast):
    model = sources.load("tiny", device="cpu", seed=0, model="turbo")  # int8 changes the weights in place
    expected, spoken, evidence, _ = int8_then_fast(model, "Hello world.", 2, 15)
    assert torch.equal(spoken, expected)
    # blocks scripted, or one new token's blocks native where a compiler built them
    assert evidence["layer_step"] in ("torchscript-int8", "native-int8")


def test_fast_t3_scores_turbos_teacher_forced_logits_as_upstream():
    turbo_model = sources.load("tiny", device="cpu", seed=0, model="turbo")  # float: other tests quantize theirs
    base = Pipeline(turbo_model)
    tokens = base.synthesize("Hello world.", seed=1, n_tokens=10).raw_tokens[:-1]
    from ttsopt.engine.t3.fast_turbo import FastTurboT3
    with torch.inference_mode():
        conds, text = base.conditioning(), base.text_to_tokens("Hello world.")
        expected = base.t3.score(base.t3.prefill(conds.t3, text, base.sampling), tokens)
        fast = FastTurboT3(turbo_model.t3)
        got = fast.score(fast.prefill(conds.t3, text, base.sampling), tokens)
    assert torch.allclose(got, expected, atol=1e-4)


def test_fast_turbo_scores_are_the_logits_its_int8_decode_samples_from(monkeypatch):
    from ttsopt.engine.t3 import sampling
    pipeline = Pipeline(sources.load("tiny", device="cpu", seed=0, model="turbo"))  # int8 changes it in place
    variants.apply(pipeline, "fast-t3+cpu-int8-t3")
    warp, sampled = sampling.warp_turbo, []
    monkeypatch.setattr(sampling, "warp_turbo", lambda logits, *a: sampled.append(logits.clone()) or warp(logits, *a))
    t3, s = pipeline.t3, pipeline.sampling
    with torch.inference_mode():
        conds, text = pipeline.conditioning(), pipeline.text_to_tokens("Hello world.")
        torch.manual_seed(1)
        tokens = t3.decode(t3.prefill(conds.t3, text, s), s, n_tokens=8)[:, :-1]
        decoded = torch.cat(sampled).float()
        scored = t3.score(t3.prefill(conds.t3, text, s), tokens)
        one_forward = t3.score_one_forward(t3.prefill(conds.t3, text, s), tokens)
    assert decoded.shape == scored.shape == (8, decoded.size(1))
    assert torch.equal(scored, decoded)
    assert not torch.equal(one_forward, decoded)  # one scale over all the rows: other int8 logits


def test_turbo_streams_from_fast_t3s_tokens_and_its_chunks_make_the_whole(turbo_model):
    from chatterbox.models.s3gen.const import S3GEN_SIL

    from ttsopt.engine.stream import synthesize_stream
    pipeline = Pipeline(turbo_model)
    variants.apply(pipeline, "fast-t3")
    whole = pipeline.synthesize("Hello world.", seed=4, n_tokens=60)
    out = synthesize_stream(pipeline, "Hello world.", seed=4, n_tokens=60, chunk_tokens=25)
    # The same draws until the first chunk's flow takes its noise from the same generator; then
    # another sample of the same length, the three silence tokens appended, as upstream does.
    assert torch.equal(out.tokens[:25], whole.tokens[:25]) and out.tokens[-3:].tolist() == [S3GEN_SIL] * 3
    assert len(out.chunks) >= 3 and len(out.wav) == len(whole.wav) == 63 * SAMPLES_PER_TOKEN
    assert 0 < out.first_audio_s < out.wall_s


def test_fast_t3_computes_a_voices_conditioning_once_and_a_new_voice_again():
    model = sources.load("tiny", device="cpu", seed=0, model="turbo")  # float: other tests quantize theirs
    from ttsopt.engine.t3.fast_turbo import FastTurboT3
    base = Pipeline(model)
    fast = FastTurboT3(model.t3)
    with torch.inference_mode():
        conds, text = base.conditioning(), base.text_to_tokens("Hello world.")
        whole = base.t3.prefill(conds.t3, text, base.sampling).logits  # upstream: one call over everything
        first = fast.prefill(conds.t3, text, base.sampling)
        again = fast.prefill(conds.t3, base.text_to_tokens("Another sentence, longer."), base.sampling)
        assert (fast.voice_hits, fast.voice_misses) == (1, 1)
        other = dataclasses.replace(conds.t3, speaker_emb=conds.t3.speaker_emb + 0.5)
        fast.prefill(other, text, base.sampling)
        assert (fast.voice_hits, fast.voice_misses) == (1, 2)
    assert torch.allclose(first.logits, whole, atol=1e-5)  # split at the voice: the same function
    L = first.len_cond
    assert torch.equal(again.cache.k[:, :, :, :L], first.cache.k[:, :, :, :L])


def test_scripted_int8_gpt2_blocks_compute_bit_for_bit_what_the_eager_blocks_compute():
    """On CPU, int8 GPT-2 blocks run as one TorchScript function each: one new token and several
    (teacher-forced scoring, causal mask) give the same hidden states and cache as the eager ops."""
    from ttsopt.engine import quant
    from ttsopt.engine.t3 import gpt2_step
    tfmr = copy.deepcopy(sources.load("tiny", device="cpu", seed=0, model="turbo").t3.tfmr)
    quant.quantize_linears(tfmr)
    plan, eager = gpt2_step.Plan(tfmr), gpt2_step.Plan(tfmr)
    eager.scripted = None
    assert plan.kind in ("torchscript-int8", "native-int8")
    plan.native = None  # one new token runs the native block where it builds: held to this one below
    torch.manual_seed(0)
    for tokens in (1, 4):
        h = torch.randn(1, tokens, tfmr.config.n_embd)
        ours = gpt2_step.StaticKV(tfmr.config, 1, 32, torch.float32, "cpu")
        ours.k.normal_(), ours.v.normal_()  # earlier tokens' keys and values
        ref = copy.deepcopy(ours)
        with torch.inference_mode():
            for _ in range(3):  # TorchScript's profiling executor optimizes from the second call on
                gpt2_step.forward(tfmr, h, copy.deepcopy(ours), 9, plan)
            got = gpt2_step.forward(tfmr, h, ours, 9, plan)
            want = gpt2_step.forward(tfmr, h, ref, 9, eager)
        assert torch.equal(got, want) and torch.equal(ours.k, ref.k) and torch.equal(ours.v, ref.v)


def test_native_gpt2_block_computes_what_the_torchscript_block_computes(native_layer, steps_agree):
    """Turbo's int8 block as one C++ op, step after step at growing positions, for one row and two:
    the TorchScript block's hidden states and cache up to the order of float32 sums."""
    from ttsopt.engine import quant
    from ttsopt.engine.t3 import gpt2_step
    tfmr = quant.quantize_linears(copy.deepcopy(sources.load("tiny", device="cpu", seed=0, model="turbo").t3.tfmr))
    native_plan, scripted_plan = gpt2_step.Plan(tfmr), gpt2_step.Plan(tfmr)
    assert native_plan.kind == "native-int8" and native_plan.native is not None
    scripted_plan.native = None
    steps_agree(gpt2_step, tfmr, native_plan, scripted_plan, (1, 2), range(4))


def test_native_gpt2_block_over_a_half_cache_computes_what_the_torchscript_block_computes(native_layer,
                                                                                          steps_agree):
    """half-kv's cache for Turbo: written rounded to half and read widened by the C++ block, as the
    TorchScript block does through its casts."""
    from ttsopt.engine import quant
    from ttsopt.engine.t3 import gpt2_step
    tfmr = quant.quantize_linears(copy.deepcopy(sources.load("tiny", device="cpu", seed=0, model="turbo").t3.tfmr))
    native_plan, scripted_plan = gpt2_step.Plan(tfmr), gpt2_step.Plan(tfmr)
    scripted_plan.native = None
    steps_agree(gpt2_step, tfmr, native_plan, scripted_plan, (1, 2), range(4), torch.float16)


# Keys and values rounded to half moved the tiny Turbo's teacher-forced logits by 6.4e-6 relative on
# the AVX-512 EPYC (seed 0, 9 tokens); the bound leaves room for other CPUs. bench prints the error
# for the full model.
TURBO_HALF_KV_LOGIT_TOLERANCE = 5e-3


def test_half_kv_on_turbo_decodes_over_a_half_cache_on_its_native_blocks(native_layer, cached_logits):
    """After cpu-int8-t3 the Turbo runner's cache is float16 (the voice's prefix copied into it rounded)
    and its blocks the native ones: its teacher-forced logits within a stated bound of the float32
    cache's."""
    model = sources.load("tiny", device="cpu", seed=0, model="turbo")
    int8 = Pipeline(model)
    variants.apply(int8, "fast-t3+cpu-int8-t3")
    tokens = int8.synthesize("Hello world.", seed=0, n_tokens=10).raw_tokens.view(-1)[:-1]
    half = Pipeline(model)
    applied = variants.apply(half, "fast-t3+half-kv")
    (float_kv, expected), (half_kv, got) = (cached_logits(p, "Hello world.", tokens) for p in (int8, half))
    assert (float_kv, half_kv) == (torch.float32, torch.float16)
    error = float((got - expected).norm() / expected.norm())
    assert 0 < error < TURBO_HALF_KV_LOGIT_TOLERANCE, error
    half.synthesize("Hello world.", seed=0, n_tokens=4)
    evidence = applied.evidence(half)["half-kv"]
    engaged, why = applied.engaged(applied.evidence(half))
    assert evidence["kv_dtype"] == "float16" and engaged and "native-int8" in why, why


def test_native_int4_gpt2_block_computes_what_the_int4_modules_compute(native_layer, steps_agree):
    """Turbo's int4 block as one C++ op (where the native build holds a vector int4 kernel, VNNI or
    AVX2), step after step, for one row and two: the eager block over the same int4 modules' hidden
    states and cache up to the order of float32 sums (the attention's is its own)."""
    from ttsopt.engine import quant
    from ttsopt.engine.t3 import gpt2_step
    tfmr = copy.deepcopy(sources.load("tiny", device="cpu", seed=0, model="turbo").t3.tfmr)
    quant.quantize_int4(tfmr, group=32)
    kernels = {m.kernel for m in tfmr.modules() if type(m) is quant.Int4Linear}
    if kernels != {"native"}:
        pytest.skip(f"int4 runs torch's kernel here: {tfmr.h[0].attn.c_attn.why_not_native}")
    native_plan, eager_plan = gpt2_step.Plan(tfmr), gpt2_step.Plan(tfmr)
    assert native_plan.kind == "native-int4" and native_plan.native_int4 is not None
    eager_plan.native_int4 = None
    steps_agree(gpt2_step, tfmr, native_plan, eager_plan, (1, 2), range(4))


def test_fast_t3_on_int4_gpt2_speaks_the_int4_upstream_tokens_on_its_native_blocks(native_layer):
    """cpu-int4-t3 under fast-t3: upstream's loop over the same int4 modules speaks the same tokens,
    and one new token's blocks run as the native int4 op where the native build holds a vector int4
    kernel (VNNI or AVX2)."""
    from ttsopt.engine import quant
    model = sources.load("tiny", device="cpu", seed=0, model="turbo")  # int4 replaces the linears in place
    int4 = Pipeline(model)
    variants.apply(int4, "cpu-int4-t3")
    expected = int4.synthesize("Hello world.", seed=2, n_tokens=15).raw_tokens
    fast = Pipeline(model)
    applied = variants.apply(fast, "fast-t3")
    assert torch.equal(fast.synthesize("Hello world.", seed=2, n_tokens=15).raw_tokens, expected)
    native = model.t3.tfmr.h[0].attn.c_attn.kernel == "native"
    evidence = applied.evidence(fast)["fast-t3"]
    assert evidence["layer_step"] == ("native-int4" if native else "int4-torch"), evidence
    assert type(model.t3.tfmr.h[0].mlp.c_fc) is quant.Int4Linear


def test_gpt2_blocks_stay_eager_when_float_or_hooked():
    """Float GPT-2 blocks, and int8 ones with a hook on any module, are not scripted: a hook must run."""
    from ttsopt.engine import quant
    from ttsopt.engine.t3 import gpt2_step
    tfmr = copy.deepcopy(sources.load("tiny", device="cpu", seed=0, model="turbo").t3.tfmr)
    assert gpt2_step.Plan(tfmr).scripted is None
    quant.quantize_linears(tfmr)
    tfmr.h[1].mlp.act.register_forward_hook(lambda *a: None)
    plan = gpt2_step.Plan(tfmr)
    assert plan.scripted is None and plan.kind == "int8-dynamic"


def test_turbos_step_plan_is_built_in_the_load_over_its_int8_blocks():
    model = sources.load("tiny", device="cpu", seed=0, model="turbo")  # int8 changes the weights in place
    pipeline = Pipeline(model)
    variants.apply(pipeline, "fast-t3+cpu-int8-t3")
    plan = pipeline.t3.plan
    assert plan is not None and plan.current() and "int8" in plan.kind
    pipeline.synthesize("Hello world.", seed=0, n_tokens=4)
    assert pipeline.t3.plan is plan


def test_a_turbo_decode_checks_its_step_plan_once_not_once_per_step(turbo_model, plan_checks):
    from ttsopt.engine.t3 import gpt2_step
    pipeline = Pipeline(turbo_model)
    variants.apply(pipeline, "fast-t3")
    short, long = plan_checks(pipeline, gpt2_step.Plan, "Hello world.")
    assert short == long and short <= 2  # the prefill's and the decode's, whatever the length
