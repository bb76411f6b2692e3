import subprocess
import sys
import time

import pytest
import soundfile as sf
import torch

from ttsopt.core.vocab import STAGES
from ttsopt.engine import sources
from ttsopt.engine.pipeline import SAMPLES_PER_TOKEN, Pipeline, Sampling, TextError, rtf


@pytest.mark.parametrize("n", [8, 21])
def test_audio_length_follows_token_count(tiny_pipeline, n):
    out = tiny_pipeline.synthesize("Hello world.", seed=1, n_tokens=n)
    assert out.n_tokens == n
    assert len(out.wav) == n * SAMPLES_PER_TOKEN
    assert out.sr == 24_000


def test_stage_times_are_positive_and_within_wall(tiny_pipeline):
    out = tiny_pipeline.synthesize("Hello world.", seed=1, n_tokens=10)
    assert tuple(out.stages) == STAGES
    assert all(t > 0 for t in out.stages.values())
    assert sum(out.stages.values()) <= out.wall_s


def test_a_wrapper_around_the_synthesis_is_inside_its_wall_time(tiny_model):
    pipeline = Pipeline(tiny_model)

    def then_clean_up(synthesize, text, **kw):
        out = synthesize(text, **kw)
        time.sleep(0.3)  # a clean-up after the inner synthesis, as cuda-cache's empty_cache
        return out

    pipeline.wrap_synthesis(then_clean_up, by="test")
    out = pipeline.synthesize("Hello world.", seed=1, n_tokens=4)
    assert out.wall_s >= sum(out.stages.values()) + 0.3


def test_rtf_is_wall_over_audio():
    assert rtf(wall_s=2.0, audio_s=8.0) == 0.25  # four times faster than real time
    assert rtf(wall_s=8.0, audio_s=2.0) == 4.0
    with pytest.raises(ValueError):
        rtf(1.0, 0.0)


def test_result_rtf_uses_the_one_definition(tiny_pipeline):
    out = tiny_pipeline.synthesize("Hello world.", seed=1, n_tokens=10)
    assert out.rtf == pytest.approx(out.wall_s / out.audio_s)


def test_forced_length_emits_no_special_token_before_the_end(tiny_pipeline):
    out = tiny_pipeline.synthesize("Hello world.", seed=5, n_tokens=30)
    assert out.raw_tokens[-1].item() == tiny_pipeline.model.t3.hp.stop_speech_token
    assert (out.raw_tokens[:-1] < 6561).all()


def test_same_seed_same_output(tiny_pipeline):
    a = tiny_pipeline.synthesize("Hello world.", seed=4, n_tokens=12)
    b = tiny_pipeline.synthesize("Hello world.", seed=4, n_tokens=12)
    assert torch.equal(a.tokens, b.tokens)


def test_local_dir_round_trip_reproduces_output(tiny_pipeline, tiny_dir):
    reloaded = Pipeline(sources.load(f"local:{tiny_dir}", device="cpu"))
    assert reloaded.model.arch == "tiny" and reloaded.model.random_weights
    a = tiny_pipeline.synthesize("Round trip.", seed=2, n_tokens=15)
    b = reloaded.synthesize("Round trip.", seed=2, n_tokens=15)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.allclose(torch.from_numpy(a.wav), torch.from_numpy(b.wav), atol=1e-5)


def test_natural_stop_matches_upstream_t3_inference(tiny_pipeline):
    s = Sampling(max_new_tokens=40)
    ours = tiny_pipeline.synthesize("Hello world.", seed=3, sampling=s).raw_tokens
    text_tokens = tiny_pipeline.text_to_tokens("Hello world.")
    torch.manual_seed(3)
    with torch.inference_mode():
        upstream = tiny_pipeline.model.t3.inference(
            t3_cond=tiny_pipeline.model.tts.conds.t3, text_tokens=text_tokens, max_new_tokens=40,
            temperature=s.temperature, cfg_weight=s.cfg_weight, repetition_penalty=s.repetition_penalty,
            min_p=s.min_p, top_p=s.top_p)
    assert torch.equal(ours, upstream[0].cpu())


def test_local_dir_missing_files_are_named(tiny_dir, tmp_path):
    for f in ("ve.safetensors", "tokenizer.json"):
        (tmp_path / f).write_bytes((tiny_dir / f).read_bytes())
    with pytest.raises(sources.SourceError, match="t3_cfg.safetensors, s3gen.safetensors"):
        sources.load(f"local:{tmp_path}", device="cpu")


def test_unknown_source_is_a_clear_error():
    with pytest.raises(sources.SourceError, match="unknown source 'nope'"):
        sources.load("nope")


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_refused(tiny_pipeline, text):
    with pytest.raises(TextError, match="empty"):
        tiny_pipeline.synthesize(text, n_tokens=5)


def test_cli_synth_writes_a_playable_wav(tmp_path):
    out = tmp_path / "x.wav"
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "synth", "Hello world.", "--source", "tiny",
                           "--tokens", "12", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "t3_decode" in proc.stdout and "RTF" in proc.stdout
    info = sf.info(str(out))
    assert info.samplerate == 24_000 and info.frames == 12 * 960


def test_cli_unreadable_reference_is_one_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "synth", "Hi.", "--source", "tiny", "--tokens", "5",
                           "--reference", str(bad), "--out", str(tmp_path / "y.wav")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "not readable audio" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "y.wav").exists()


def test_random_weights_cache_reproduces_the_build(tmp_path, monkeypatch):
    """The first load builds and caches, the second reads the cache through local:DIR with random
    initialisation skipped: every parameter, buffer and conditional must come back equal."""
    monkeypatch.setenv("TTSOPT_CACHE", str(tmp_path))
    built = sources.load("tiny", device="cpu", seed=3)
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and (entries[0] / sources.ARCH_FILE).is_file()
    cached = sources.load("tiny", device="cpu", seed=3)
    for name in ("t3", "s3gen", "ve"):
        a, b = getattr(built.tts, name), getattr(cached.tts, name)
        for kind in ("named_parameters", "named_buffers"):
            left, right = dict(getattr(a, kind)()), dict(getattr(b, kind)())
            assert left.keys() == right.keys(), (name, kind)
            unequal = [k for k in left if not torch.equal(left[k], right[k])]
            assert not unequal, f"{name} {kind} differ after the cache: {unequal[:5]}"
    for key, value in vars(built.tts.conds.t3).items():
        if torch.is_tensor(value):
            assert torch.equal(value, getattr(cached.tts.conds.t3, key)), key
    for key, value in built.tts.conds.gen.items():
        if torch.is_tensor(value):
            assert torch.equal(value, cached.tts.conds.gen[key]), key
    # another seed is another entry, not a stale hit
    other = sources.load("tiny", device="cpu", seed=4)
    assert len(list(tmp_path.iterdir())) == 2
    w = lambda m: next(m.tts.t3.parameters())  # noqa: E731
    assert not torch.equal(w(other), w(cached))


def test_damaged_cache_entry_is_rebuilt_and_said(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTSOPT_CACHE", str(tmp_path))
    sources.load("tiny", device="cpu", seed=5)
    entry = next(tmp_path.iterdir())
    (entry / "t3_cfg.safetensors").write_bytes(b"truncated")
    again = sources.load("tiny", device="cpu", seed=5)
    assert "rebuilding the cached tiny weights" in capsys.readouterr().err
    (entry / sources.CONDS_FILE).write_bytes(b"not a torch file")  # fails in torch.load, not ours
    sources.load("tiny", device="cpu", seed=5)
    assert "rebuilding the cached tiny weights" in capsys.readouterr().err
    assert again.random_weights and (entry / sources.ARCH_FILE).is_file()
    sources.load("tiny", device="cpu", seed=5)  # and the rebuilt entry reads back cleanly
    assert "rebuilding" not in capsys.readouterr().err


def test_cache_off_builds_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("TTSOPT_CACHE", "off")
    monkeypatch.setattr(sources.Path, "home", lambda: tmp_path)
    sources.load("tiny", device="cpu", seed=6)
    assert not any(tmp_path.rglob("*.safetensors"))


def test_cache_keeps_the_two_most_recent_builds_per_seed(tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("TTSOPT_CACHE", str(tmp_path))
    for age, name in enumerate(["tiny-seed7-aaaa", "tiny-seed7-bbbb", "tiny-seed70-cccc", "full-seed7-dddd"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1e9 - age, 1e9 - age))  # long ago; aaaa the newest of them
    sources.load("tiny", device="cpu", seed=7)
    left = sorted(p.name for p in tmp_path.iterdir())
    built = sources.random_cache_dir("tiny", 7, sources.REFERENCE_WAV).name
    # this build and the newest older tiny seed-7 entry stay; other seeds and archs are not touched
    assert left == sorted([built, "tiny-seed7-aaaa", "tiny-seed70-cccc", "full-seed7-dddd"])
