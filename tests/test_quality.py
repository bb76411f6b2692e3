"""The model-free quality checks move the right way on degraded copies of a speech-like clip: a cut-off
ending, a tail of babble, a constant tone, clipping, noise against the baseline. The clip is synthetic
buzz, which silero-vad rightly calls no speech, so these score with `models=False` (the energy
detector); real speech with silero-vad is in test_quality_speech.py."""
import json

import librosa
import numpy as np
import pytest
import soundfile as sf

from ttsopt import cli
from ttsopt.measure import quality

SR = 24_000
TEXT = "The quick brown fox jumps over"  # 25 letters: about 12 per second over two seconds of speech


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced sound with a gliding pitch and syllable rhythm: harmonics of 100-220 Hz plus breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.9 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    sound = voiced / np.max(np.abs(voiced)) + 0.05 * rng.standard_normal(len(t))
    return 0.3 * sound * np.abs(np.sin(2 * np.pi * 2 * t)) ** 0.5


def silence(seconds: float, seed: int = 1) -> np.ndarray:
    return 1e-4 * np.random.default_rng(seed).standard_normal(int(seconds * SR))  # dither, not speech


@pytest.fixture(scope="module")
def clean():
    return np.concatenate([silence(0.4), speechlike(2.0), silence(0.5)])


def test_a_clean_clip_has_its_silences_measured_and_no_problem(clean):
    m = quality.score(clean, SR, text=TEXT, models=False)
    assert m["leading_silence_s"].value == pytest.approx(0.4, abs=0.05)
    assert m["trailing_silence_s"].value == pytest.approx(0.5, abs=0.05)
    assert m["speech_s"].value == pytest.approx(2.0, abs=0.1)
    assert m["ends_in_speech"].value is False and 8 < m["letters_per_speech_s"].value < 25
    assert m["longest_pause_s"].value < quality.BRIDGE_S, "syllable dips are not pauses"
    assert quality.problems(m) == []
    assert all(metric.source for metric in m.values()), "every metric names how it was computed"


def test_a_clip_cut_off_mid_speech_is_flagged(clean):
    m = quality.score(clean[: int(1.6 * SR)], SR, models=False)
    assert m["ends_in_speech"].value is True and "cut off" in m["ends_in_speech"].flag


def test_a_tail_of_babble_after_the_text_is_flagged(clean):
    tailed = np.concatenate([clean, speechlike(1.5, seed=3), silence(0.3)])
    m = quality.score(tailed, SR, text=TEXT, models=False)
    assert m["letters_per_speech_s"].value < quality.RATE_LOW and "tail" in m["letters_per_speech_s"].flag
    assert m["speech_s"].value > quality.score(clean, SR, models=False)["speech_s"].value + 1.5
    assert m["longest_pause_s"].value == pytest.approx(0.5, abs=0.06), "the silence before the babble"


def test_a_constant_tone_is_found_with_its_frequency(clean):
    t = np.arange(len(clean)) / SR
    m = quality.score(clean + 0.02 * np.sin(2 * np.pi * 4900 * t), SR, models=False)
    assert m["tone_share"].value >= quality.TONE_SHARE_FLAG and m["tone_hz"].value == pytest.approx(4900, abs=20)
    assert "constant tone near 4" in m["tone_share"].flag
    assert quality.score(clean, SR, models=False)["tone_share"].value < quality.TONE_SHARE_FLAG


def test_clipping_is_counted(clean):
    m = quality.score(np.clip(clean * 5, -1, 1), SR, models=False)
    assert m["clipped"].value > quality.CLIP_SHARE_FLAG and "clipped" in m["clipped"].flag
    assert quality.score(clean, SR, models=False)["clipped"].value == 0.0


def test_distance_to_the_baseline_grows_with_the_noise(clean):
    rng = np.random.default_rng(7)
    power = np.mean(clean ** 2)

    def noisy(snr_db):
        return clean + np.sqrt(power / 10 ** (snr_db / 10)) * rng.standard_normal(len(clean))

    same = quality.score(clean, SR, baseline=clean, models=False)
    assert same["log_mel_distance_db"].value == 0.0 and same["length_ratio"].value == 1.0
    mild, harsh = (quality.score(noisy(snr), SR, baseline=clean, models=False)["log_mel_distance_db"].value
                   for snr in (20, 0))
    assert 0 < mild < harsh


def test_a_silent_clip_says_it_found_no_speech():
    m = quality.score(silence(1.0), SR, text=TEXT, models=False)
    assert m["speech_s"].value == 0.0 and "no speech found" in quality.problems(m)


needs_silero = pytest.mark.skipif(quality.silero_source() is None,
                                  reason="silero-vad is not installed (pip install 'ttsopt[quality]')")


@needs_silero
def test_silero_vad_finds_the_speech_when_installed_and_every_timing_metric_says_so(clean):
    import torch

    threads = torch.get_num_threads()
    timed = quality.timing(clean, SR, TEXT)
    assert {m.source for m in timed.values()} == {quality.silero_source()}
    assert "silero-vad" in quality.silero_source() and "16 kHz" in quality.silero_source()
    assert torch.get_num_threads() == threads, "importing silero-vad sets torch to one thread; it is put back"
    noise = 0.1 * np.random.default_rng(0).standard_normal(2 * SR)
    assert not quality.speech_activity(noise, SR, "silero").any(), "noise is not speech to silero-vad"
    assert quality.speech_activity(noise, SR, "energy").all(), "to the energy detector any loud sound is"
    assert quality.score(noise, SR, text=TEXT, models=False)["speech_s"].source == quality.ENERGY_VAD


def test_without_silero_vad_the_energy_detector_says_it_stands_in(clean, monkeypatch):
    monkeypatch.setattr(quality, "silero_source", lambda: None)
    timed = quality.timing(clean, SR, TEXT)
    assert {m.source for m in timed.values()} == {quality.SILERO_MISSING}
    assert quality.ENERGY_VAD in quality.SILERO_MISSING and "silero-vad is not installed" in quality.SILERO_MISSING
    assert timed["speech_s"].value == pytest.approx(2.0, abs=0.1)
    with pytest.raises(RuntimeError, match="silero-vad is not installed"):
        quality.speech_activity(clean, SR, "silero")
    with pytest.raises(ValueError, match="unknown speech detector"):
        quality.speech_activity(clean, SR, "loudness")


def test_chatterbox_voice_encoder_similarity_names_its_source_and_puts_a_clip_next_to_itself(clean):
    """Mechanics only: random weights' embeddings say nothing about voices."""
    import torch
    from chatterbox.models.voice_encoder import VoiceEncoder

    torch.manual_seed(0)
    encoder = VoiceEncoder().eval()
    same = quality.chatterbox_similarity(encoder, clean, SR, clean, SR)
    assert same.value == pytest.approx(1.0, abs=1e-3) and same.unit == "cosine"
    assert same.source.startswith("chatterbox VoiceEncoder") and "reference clip" in same.source
    other = quality.chatterbox_similarity(encoder, clean, SR, speechlike(2.5, seed=5)[::-1].copy(), SR)
    assert -1 <= other.value < same.value
    at_16k = librosa.resample(clean.astype(np.float32), orig_sr=SR, target_sr=16_000)
    speaker = torch.from_numpy(encoder.embeds_from_wavs([at_16k], sample_rate=16_000, as_spk=True))[None]
    conds = quality.chatterbox_similarity(encoder, clean, SR, speaker)  # (1, E), as conds.t3.speaker_emb keeps it
    assert conds.value == pytest.approx(1.0, abs=1e-3) and "speaker embedding" in conds.source


def test_score_command_prints_every_metric_with_its_source(tmp_path, capsys, clean):
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), clean[: int(1.6 * SR)], SR)
    base = tmp_path / "base.wav"  # at another rate: the command resamples it to the clip's
    sf.write(str(base), librosa.resample(clean, orig_sr=SR, target_sr=16_000), 16_000)
    assert cli.main(["score", str(clip), "--text", TEXT, "--baseline", str(base), "--json", "--model-free"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["ends_in_speech"]["value"] is True and out["problems"]
    assert {"log_mel_distance_db", "tone_hz", "letters_per_speech_s"} <= set(out["metrics"])
    assert all(m["source"] for m in out["metrics"].values())
    assert cli.main(["score", str(clip), "--model-free"]) == 0
    assert "problem(s) flagged" in capsys.readouterr().out


def test_score_refuses_a_missing_or_unreadable_clip(tmp_path, capsys):
    assert cli.main(["score", str(tmp_path / "nowhere.wav")]) == 2
    (tmp_path / "text.wav").write_text("not audio")
    assert cli.main(["score", str(tmp_path / "text.wav")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "not a readable audio file" in err


def _tiny_ctc_recogniser(folder):
    """A transformers speech-recognition model folder with random weights: the plumbing of a local
    recogniser, which hears nothing sensible."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )
    folder.mkdir()
    vocab = {"<pad>": 0, "|": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    processor = Wav2Vec2Processor(Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000),
                                  Wav2Vec2CTCTokenizer(str(folder / "vocab.json")))
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


def test_a_local_recogniser_named_in_the_environment_replaces_pocketsphinx(tmp_path, monkeypatch):
    folder = _tiny_ctc_recogniser(tmp_path / "asr")
    monkeypatch.setenv(quality.ASR_ENV, str(folder))
    metric = quality.word_error_rate(speechlike(1.0), SR, "hello world")
    assert metric.value is not None and metric.value >= 0
    assert f"wav2vec2 model at {folder} (TTSOPT_ASR_MODEL)" in metric.source and "pocketsphinx" not in metric.source
    monkeypatch.setenv(quality.ASR_ENV, str(tmp_path))  # a folder with no model in it
    with pytest.raises(quality.UserError, match="TTSOPT_ASR_MODEL=.*no transformers model there"):
        quality.word_error_rate(speechlike(1.0), SR, "hello world")
