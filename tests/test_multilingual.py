"""The multilingual model as the workbench runs it: the same tokens and audio as upstream's
`ChatterboxMultilingualTTS` for the same seed and language, its own files, its language rules,
and variants that say whether they are made for it."""
import contextlib
import copy
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from chatterbox.models.t3.inference import alignment_stream_analyzer as asa
from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, ChatterboxMultilingualTTS, punc_norm

from ttsopt import variants
from ttsopt.core import params
from ttsopt.core.errors import UserError
from ttsopt.engine import sources
from ttsopt.engine.batch import synthesize_batch
from ttsopt.engine.pipeline import Pipeline, Sampling, TextError
from ttsopt.engine.t3 import alignment
from ttsopt.engine.t3.fast import FastT3
from ttsopt.engine.t3.upstream import UpstreamT3
from ttsopt.experiment import probes, profiles

STOP = 6562


def upstream_heads(model):
    """Upstream's analyzer reads heads 15, 11 and 2; the tiny model has 4 per layer. The same
    remapping the workbench applies (modulo the head count), for upstream's own calls."""
    n = model.t3.tfmr.config.num_attention_heads
    return alignment._aligned_heads([(layer, head % n) for layer, head in asa.LLAMA_ALIGNED_HEADS])


@pytest.fixture(scope="module")
def mtl_model():
    return sources.load("tiny", device="cpu", seed=0, model="multilingual")


@pytest.fixture()
def mtl(mtl_model):
    return Pipeline(mtl_model)


def test_the_model_is_upstreams_multilingual_class_with_its_vocabulary(mtl_model):
    assert mtl_model.name == "multilingual"
    assert isinstance(mtl_model.tts, ChatterboxMultilingualTTS)
    assert mtl_model.t3.hp.is_multilingual and not mtl_model.s3gen.meanflow


def test_the_languages_are_upstreams_and_only_multilingual_speaks_them_all():
    assert set(params.MULTILINGUAL) == set(SUPPORTED_LANGUAGES)
    assert params.LANGUAGES["original"] == params.LANGUAGES["turbo"] == ("en",)


def test_sampling_defaults_are_upstream_multilingual_generates():
    defaults = {k: p.default for k, p in inspect.signature(ChatterboxMultilingualTTS.generate).parameters.items()
                if p.default is not inspect.Parameter.empty}
    ours = dataclasses.asdict(Sampling.for_model("multilingual"))
    shared = {k: v for k, v in defaults.items() if k in ours}
    assert shared == {k: ours[k] for k in shared}
    assert shared["repetition_penalty"] == 2.0


@pytest.mark.parametrize("language,text", [("fr", "Où est la gare, s'il vous plaît ?"), ("ru", "Привет, мир."),
                                           ("zh", "你好，世界。")])
def test_text_tokens_are_upstreams_with_the_language_token(mtl, language, text):
    mtl.language = language
    ours = mtl.text_to_tokens(text)
    upstream = mtl.model.tts.tokenizer.text_to_tokens(punc_norm(text), language_id=language)
    assert torch.equal(ours[0, 1:-1].cpu(), upstream[0].long())
    assert ours.size(0) == 2  # the CFG row
    vocab = mtl.model.tts.tokenizer.tokenizer
    assert ours[0, 1].item() == vocab.token_to_id(f"[{language}]")


@pytest.mark.parametrize("limit", [6, 25])
def test_t3_tokens_equal_upstream_inference_with_its_alignment_analyzer(mtl, limit):
    mtl.language = "de"
    s = dataclasses.replace(mtl.sampling, max_new_tokens=limit)
    ours = mtl.synthesize("Guten Morgen, Welt.", seed=3, sampling=s).raw_tokens
    text_tokens = mtl.text_to_tokens("Guten Morgen, Welt.")
    torch.manual_seed(3)
    with torch.inference_mode(), upstream_heads(mtl.model):
        upstream = mtl.model.t3.inference(t3_cond=mtl.model.tts.conds.t3, text_tokens=text_tokens,
                                          max_new_tokens=limit, temperature=s.temperature, cfg_weight=s.cfg_weight,
                                          repetition_penalty=s.repetition_penalty, min_p=s.min_p, top_p=s.top_p)
    assert torch.equal(ours, upstream[0].cpu())
    assert mtl.analyzer_log["steps"] > 0 and not mtl.analyzer_log["forced_run"]


@pytest.mark.parametrize("limit", [6, 25])
def test_fast_t3_speaks_upstreams_multilingual_tokens_with_its_analyzer(mtl_model, limit):
    fast = Pipeline(mtl_model)
    applied = variants.apply(fast, "fast-t3")
    fast.language = "de"
    s = dataclasses.replace(fast.sampling, max_new_tokens=limit)
    ours = fast.synthesize("Guten Morgen, Welt.", seed=3, sampling=s).raw_tokens
    text_tokens = fast.text_to_tokens("Guten Morgen, Welt.")
    torch.manual_seed(3)
    with torch.inference_mode(), upstream_heads(mtl_model):
        upstream = mtl_model.t3.inference(t3_cond=mtl_model.tts.conds.t3, text_tokens=text_tokens,
                                          max_new_tokens=limit, temperature=s.temperature, cfg_weight=s.cfg_weight,
                                          repetition_penalty=s.repetition_penalty, min_p=s.min_p, top_p=s.top_p)
    assert torch.equal(ours, upstream[0].cpu())
    assert fast.analyzer_log["steps"] == ours.numel() and not fast.analyzer_log["forced_run"]
    evidence = applied.evidence(fast)["fast-t3"]
    assert evidence["analyzed_steps"] == evidence["forwards"] > 0  # the analyzer's rows from every step


def test_fast_t3_hands_the_analyzer_the_attention_upstreams_eager_steps_return(mtl):
    """The analyzer's alignment (its text columns of every step's rows) and the last step's whole
    rows, from fast-t3's taps, against the ones upstream's hooks caught from eager attention."""
    runs = []

    def keeping(t3, len_cond, text_len):
        runs.append(alignment.AnalyzerRun({}, t3, len_cond, text_len))
        return runs[-1]

    s = dataclasses.replace(mtl.sampling, max_new_tokens=15)
    tt = mtl.text_to_tokens("Bonjour le monde.")
    attention = mtl.model.t3.tfmr.config._attn_implementation
    for runner in (UpstreamT3(mtl.model.t3), FastT3(mtl.model.t3)):
        runner.analyzer_factory = keeping
        with torch.inference_mode():
            torch.manual_seed(4)
            runner.decode(runner.prefill(mtl.conditioning().t3, tt, s), s)
    upstream, fast = (run.inner for run in runs)
    # one row per step, after the prefill's row of the start-of-speech token
    assert upstream.alignment.shape == fast.alignment.shape and upstream.alignment.size(0) == 1 + 15
    assert torch.allclose(fast.alignment, upstream.alignment, rtol=1e-4, atol=1e-6)
    for theirs, ours in zip(upstream.last_aligned_attns, fast.last_aligned_attns):
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert all(run.hooks == [] for run in runs)  # both closed: their hooks removed, the attention restored
    assert mtl.model.t3.tfmr.config._attn_implementation == attention


def test_fast_t3_stops_where_upstreams_analyzer_stops_it(mtl_model):
    fast = Pipeline(mtl_model)
    variants.apply(fast, "fast-t3")
    fast.language = "fr"
    text = "Bonjour le monde."
    with repeating(mtl_model):
        torch.manual_seed(7)
        with upstream_heads(mtl_model):
            upstream = mtl_model.tts.generate(text, language_id="fr")[0].numpy()
        ours = fast.synthesize(text, seed=7)
    assert ours.raw_tokens[-1].item() == STOP and 2 < ours.raw_tokens.numel() < 20
    assert fast.analyzer_log["wanted_stop"] >= 1
    assert np.array_equal(ours.wav, upstream)


def test_fast_t3_on_the_int8_multilingual_step_keeps_the_int8_tokens_and_the_analyzer(mtl_model, native_layer,
                                                                                     int8_then_fast):
    expected, spoken, evidence, fast = int8_then_fast(copy.deepcopy(mtl_model), "Hola, mundo.", 2, 14)
    assert torch.equal(spoken, expected)
    assert evidence["layer_step"] == "native-int8-joined" and evidence["analyzed_steps"] == 14
    assert fast.analyzer_log["steps"] == 14


def test_a_t3_batch_of_the_multilingual_model_is_refused_not_spoken_without_its_analyzer(mtl_model):
    pipeline = Pipeline(mtl_model)
    variants.apply(pipeline, "fast-t3")
    with pytest.raises(UserError, match="alignment analyzer"):
        synthesize_batch(pipeline, ["Hola.", "Adiós."], [0, 1], 4)


@contextlib.contextmanager
def repeating(model, token: int = 100, boost: float = 12.0):
    """Random weights never stop by themselves, and the analyzer suppresses a stop until the text
    is spoken; a strong bias towards one speech token makes T3 repeat it, which the analyzer
    answers with a forced stop within a few steps: a natural end, in a test's time."""
    def boosted(module, args, logits):  # the speech head has no bias to raise: its output is raised
        logits = logits.clone()
        logits[..., token] += boost
        return logits

    handle = model.t3.speech_head.register_forward_hook(boosted)
    try:
        yield
    finally:
        handle.remove()


def test_a_natural_stop_gives_upstream_generates_audio_exactly(mtl):
    mtl.language = "fr"
    text = "Bonjour le monde."
    with repeating(mtl.model):
        torch.manual_seed(7)
        with upstream_heads(mtl.model):
            upstream = mtl.model.tts.generate(text, language_id="fr")[0].numpy()
        ours = mtl.synthesize(text, seed=7)
    assert ours.raw_tokens[-1].item() == STOP and 2 < ours.raw_tokens.numel() < 20
    assert mtl.analyzer_log["wanted_stop"] >= 1  # the analyzer's forced stop, as upstream's
    assert ours.wav.shape == upstream.shape
    assert np.array_equal(ours.wav, upstream)


def test_the_analyzer_leaves_no_hooks_behind_across_syntheses(mtl):
    layers = mtl.model.t3.tfmr.layers
    before = sum(len(layer.self_attn._forward_hooks) for layer in layers)
    for seed in range(3):
        mtl.synthesize("Hello world.", seed=seed, n_tokens=8)
    assert sum(len(layer.self_attn._forward_hooks) for layer in layers) == before
    assert mtl.analyzer_log["syntheses"] == 3 and mtl.analyzer_log["forced_run"]


@pytest.mark.parametrize("spec", [None, "fast-t3"])
def test_teacher_forced_logits_leave_no_analyzer_open(mtl_model, spec):
    """The fidelity probe prefills (which opens the analyzer) and scores without decoding: the
    score closes it, so no hook and no eager attention outlive the probe."""
    pipeline = Pipeline(mtl_model)
    if spec:
        variants.apply(pipeline, spec)
    pipeline.synthesize("Hello world.", seed=1, n_tokens=4)  # transformers installs its own hooks once
    layers, config = mtl_model.t3.tfmr.layers, mtl_model.t3.tfmr.config
    before, attention = sum(len(layer.self_attn._forward_hooks) for layer in layers), config._attn_implementation
    out = probes.probe(pipeline, "Hello world.", torch.arange(12), seed=1)
    assert out["logits"].shape[0] == 12
    assert sum(len(layer.self_attn._forward_hooks) for layer in layers) == before
    assert config._attn_implementation == attention and pipeline.t3.analyzer is None


def test_a_forced_length_runs_the_forwards_a_natural_stop_would(mtl):
    out = mtl.synthesize("Hello world.", seed=1, n_tokens=9)
    assert out.t3_forwards == 9 and out.n_tokens == 9


def test_multilingual_weights_round_trip_through_their_own_layout(mtl, mtl_model, tmp_path):
    folder = sources.save_local(mtl_model, tmp_path / "mtl")
    assert {"t3_mtl23ls_v2.safetensors", "s3gen.pt", "ve.pt", "grapheme_mtl_merged_expanded_v1.json",
            "Cangjie5_TC.json", "conds.pt"} <= {p.name for p in folder.iterdir()}
    reloaded = Pipeline(sources.load(f"local:{folder}", device="cpu", model="multilingual"))
    for pipeline in (mtl, reloaded):
        pipeline.language = "zh"
    a = mtl.synthesize("你好。", seed=2, n_tokens=10)
    b = reloaded.synthesize("你好。", seed=2, n_tokens=10)
    assert torch.equal(a.tokens, b.tokens)
    assert np.allclose(a.wav, b.wav, atol=1e-5)
    with pytest.raises(sources.SourceError, match="holds the multilingual model's weights.*add --model multilingual"):
        sources.load(f"local:{folder}", device="cpu")


def test_chinese_without_the_cangjie_mapping_is_refused_not_misread(mtl_model, tmp_path):
    folder = sources.save_local(mtl_model, tmp_path / "mtl")
    (folder / sources.CANGJIE_FILE).unlink()
    pipeline = Pipeline(sources.load(f"local:{folder}", device="cpu", model="multilingual"))
    pipeline.language = "zh"
    with pytest.raises(TextError, match="Cangjie"):
        pipeline.text_to_tokens("你好。")
    pipeline.language = "fr"
    assert pipeline.text_to_tokens("Bonjour.").size(-1) > 3  # the other languages still load and speak


@pytest.mark.parametrize("model", ["original", "turbo"])
def test_a_language_the_model_cannot_speak_is_one_clear_error(model, tiny_model):
    pipeline = Pipeline(tiny_model if model == "original" else sources.load("tiny", device="cpu", model="turbo"))
    pipeline.language = "fr"
    with pytest.raises(TextError, match=f"the {model} model speaks English only, not 'fr'.*--model multilingual"):
        pipeline.synthesize("Bonjour.", n_tokens=4)


def test_an_unknown_language_names_the_ones_there_are():
    with pytest.raises(UserError, match="unknown language 'xx'.*ar, da, de"):
        params.language("xx")


def test_the_prompts_language_column_is_read_and_checked(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("id,category,text,language\na,short,Hello.,\nb,short,Bonjour.,FR\n", encoding="utf-8")
    rows = profiles.load_prompts(csv)
    assert [r["language"] for r in rows] == ["en", "fr"]
    with pytest.raises(UserError, match="original model speaks English only.*in b"):
        profiles.check_languages(rows, "original", csv)
    assert profiles.check_languages(rows, "multilingual", csv) == rows
    csv.write_text("id,category,text,language\na,short,Hello.,klingon\n", encoding="utf-8")
    with pytest.raises(UserError, match="language no model speaks in a"):
        profiles.load_prompts(csv)
    csv.write_text("id,category,text\na,short,Hello.\n", encoding="utf-8")
    assert profiles.load_prompts(csv)[0]["language"] == "en"  # the column is optional


def test_every_variant_runs_on_multilingual_or_says_why_not(mtl_model):
    for name, v in variants.registry().items():
        reason = v.applies_to("multilingual")
        if reason is not None:
            assert "multilingual" in reason or "turbo" in reason.lower(), name
            with pytest.raises(variants.NotApplicable, match=name):
                variants.apply(Pipeline(mtl_model), name)
            continue
        if v.check(None):  # CUDA-only and the like: nothing to run on this machine
            continue
        pipeline = Pipeline(copy.deepcopy(mtl_model))  # variants may change the model's weights in place
        pipeline.language = "es"
        applied = variants.apply(pipeline, name)
        pipeline.synthesize("Hola, mundo.", seed=0, n_tokens=6)
        assert applied.evidence(pipeline)[name], name


def test_lossless_variants_keep_the_multilingual_tokens(mtl_model):
    base = Pipeline(mtl_model)
    base.language = "it"
    expected = base.synthesize("Ciao a tutti.", seed=5, n_tokens=12).raw_tokens
    for name in ("no-grad", "static-kv-cache", "fast-t3"):
        pipeline = Pipeline(mtl_model)
        pipeline.language = "it"
        variants.apply(pipeline, name)
        assert torch.equal(pipeline.synthesize("Ciao a tutti.", seed=5, n_tokens=12).raw_tokens, expected), name


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "ttsopt", *argv], capture_output=True, text=True, timeout=timeout)


def test_cli_synth_speaks_french_with_the_multilingual_model(tmp_path):
    out = tmp_path / "fr.wav"
    done = _cli("synth", "Bonjour tout le monde.", "--model", "multilingual", "--language", "fr",
                "--tokens", "10", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "multilingual model" in done.stdout
    assert sf.info(str(out)).frames == 10 * 960


def test_cli_refuses_a_language_the_model_cannot_speak_before_loading_anything(tmp_path):
    out = tmp_path / "fr.wav"
    done = _cli("synth", "Bonjour.", "--language", "fr", "--out", str(out), timeout=60)
    assert done.returncode == 2
    assert "the original model speaks English only, not 'fr'" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_its_pickled_checkpoints_load_as_the_files_pages_and_a_save_over_them_leaves_a_loaded_model_as_it_was(
        mtl_model, tmp_path, monkeypatch):
    """S3Gen and the voice encoder ship as torch pickles: read as mappings (`checkpoint.read_pickle`),
    not copies, and a model saved into the same folder is a new file, so the loaded one keeps its weights."""
    from ttsopt.engine import checkpoint
    monkeypatch.setattr(checkpoint, "MAPPED_MIN_BYTES", 0)  # the tiny model's tensors all mapped
    folder = tmp_path / "weights"
    sources.save_local(mtl_model, folder)
    s3gen_file = folder / sources.LAYOUTS["multilingual"].s3gen
    assert s3gen_file.suffix == ".pt"
    loaded = sources.load(f"local:{folder}", device="cpu", model="multilingual")
    assert str(s3gen_file) in Path("/proc/self/maps").read_text()
    before = {k: v.clone() for k, v in loaded.tts.s3gen.state_dict().items()}
    assert all(torch.equal(v, mtl_model.tts.s3gen.state_dict()[k]) for k, v in before.items())
    other = sources.load("tiny", device="cpu", seed=7, model="multilingual")
    sources.save_local(other, folder)
    assert all(torch.equal(v, before[k]) for k, v in loaded.tts.s3gen.state_dict().items())
    again = sources.load(f"local:{folder}", device="cpu", model="multilingual")
    name = next(k for k, v in other.tts.s3gen.state_dict().items() if not torch.equal(v, before[k]))  # seed 7's own
    assert torch.equal(again.tts.s3gen.state_dict()[name], other.tts.s3gen.state_dict()[name])
    assert not torch.equal(again.tts.s3gen.state_dict()[name], before[name])
