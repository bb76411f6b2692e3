"""The quality checks on real speech: espeak-ng speaks a sentence, and degraded copies of it (noise
at 0 dB SNR, an 8 kHz band limit, 20% slower, the last word cut off, a second of babble after the
end, a 4.9 kHz tone) each move the checks the way a listener would."""
import json
import shutil
import subprocess

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from ttsopt import cli
from ttsopt.measure import quality

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng); it makes the speech")
TEXT = "Please call Stella. Ask her to bring these things with her from the store."
BABBLE = "One more thing, and then another."
SR = 24_000


def speak(text: str, path, voice: str = "en") -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "-w", str(path), text], check=True)
    wav, sr = sf.read(str(path), dtype="float64")
    return librosa.resample(wav, orig_sr=sr, target_sr=SR)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return degraded_clips(tmp_path_factory.mktemp("speech"))


def degraded_clips(folder) -> dict[str, np.ndarray]:
    """TEXT spoken by espeak-ng, and the six degraded copies, at SR (scripts/quality-table.py too)."""
    clean = speak(TEXT, folder / "clean.wav")
    rng = np.random.default_rng(0)
    active = quality.speech_activity(clean, SR, "energy")  # the same cut whichever detector scores
    end = int((np.flatnonzero(active)[-1] * quality.HOP_S + quality.FRAME_S) * SR)
    b, a = scipy.signal.butter(8, 4000 / (SR / 2))
    t = np.arange(len(clean)) / SR
    return {
        "clean": clean,
        "noise 0 dB": clean + rng.standard_normal(len(clean)) * np.sqrt(np.mean(clean ** 2)),
        "8 kHz band": scipy.signal.filtfilt(b, a, clean),
        "20% slower": librosa.effects.time_stretch(clean.astype(np.float32), rate=1 / 1.2).astype(np.float64),
        "last word cut": clean[:end - int(0.25 * SR)],
        "babble tail": np.concatenate([clean[:end], speak(BABBLE, folder / "babble.wav")]),
        "4.9 kHz tone": clean + 0.05 * np.sin(2 * np.pi * 4900 * t),
    }


@pytest.fixture(scope="module")
def scores(clips):
    return {name: quality.score(wav, SR, text=TEXT, baseline=clips["clean"]) for name, wav in clips.items()}


def test_clean_speech_raises_no_flag_and_every_metric_names_its_source(scores):
    clean = scores["clean"]
    assert quality.problems(clean) == []
    assert 8 < clean["letters_per_speech_s"].value < 25
    assert all(m.source for m in clean.values())
    assert clean["log_mel_distance_db"].value == 0


def test_the_recogniser_hears_the_clean_clip_best(scores):
    wer = {name: s["word_error_rate"].value for name, s in scores.items()}
    assert "pocketsphinx" in scores["clean"]["word_error_rate"].source
    assert scores["clean"]["word_error_rate"].note, "the transcript is kept"
    for worse in ("noise 0 dB", "8 kHz band", "4.9 kHz tone"):
        assert wer[worse] > wer["clean"], (worse, wer)


def test_the_predicted_mos_falls_with_noise_and_names_its_model(scores):
    clean, noisy = scores["clean"]["mos"], scores["noise 0 dB"]["mos"]
    assert "distillmos" in clean.source and 1 <= noisy.value <= 5 and 1 <= clean.value <= 5
    assert noisy.value < clean.value - 0.3, (clean.value, noisy.value)


def test_the_intrusive_measures_fall_with_the_damage_and_skip_unaligned_clips(scores):
    clean, noisy, band = scores["clean"], scores["noise 0 dB"], scores["8 kHz band"]
    assert clean["stoi"].value == pytest.approx(1.0) and clean["pesq_wb"].value > 4.4
    assert noisy["stoi"].value < 0.9 and noisy["pesq_wb"].value < 1.5
    assert band["pesq_wb"].value < clean["pesq_wb"].value and "pesq" in band["pesq_wb"].source
    assert scores["20% slower"]["stoi"].value is None and "differ in length" in scores["20% slower"]["stoi"].source


def test_each_degradation_moves_its_own_check(scores):
    clean = scores["clean"]
    assert scores["noise 0 dB"]["log_mel_distance_db"].value > 5
    assert scores["8 kHz band"]["log_mel_distance_db"].value > 5
    slower = scores["20% slower"]
    assert slower["length_ratio"].value == pytest.approx(1.2, abs=0.02)
    assert slower["letters_per_speech_s"].value < clean["letters_per_speech_s"].value / 1.1
    cut = scores["last word cut"]
    assert cut["ends_in_speech"].value is True and "cut off" in cut["ends_in_speech"].flag
    tail = scores["babble tail"]
    assert tail["speech_s"].value > clean["speech_s"].value + 1.0
    assert tail["letters_per_speech_s"].value < clean["letters_per_speech_s"].value * 0.75
    tone = scores["4.9 kHz tone"]
    assert tone["tone_hz"].value == pytest.approx(4900, abs=30) and "tone" in tone["tone_share"].flag
    assert not clean["tone_share"].flag


@pytest.mark.parametrize("detector", ["silero", "energy"])
def test_the_tail_and_truncation_checks_fire_with_either_detector(clips, detector):
    if detector == "silero" and quality.silero_source() is None:
        pytest.skip("silero-vad is not installed (pip install 'ttsopt[quality]')")
    timed = {name: quality.timing(clips[name], SR, TEXT, detector)
             for name in ("clean", "last word cut", "babble tail")}
    timed["silence"] = quality.timing(np.zeros(2 * SR), SR, TEXT, detector)
    source = quality.silero_source() if detector == "silero" else quality.ENERGY_VAD
    assert all(m.source == source for t in timed.values() for m in t.values())
    clean, cut, tail = timed["clean"], timed["last word cut"], timed["babble tail"]
    assert not clean["ends_in_speech"].value and not clean["letters_per_speech_s"].flag
    assert cut["ends_in_speech"].value is True and "cut off" in cut["ends_in_speech"].flag
    assert tail["speech_s"].value > clean["speech_s"].value + 1.0 and "tail" in tail["letters_per_speech_s"].flag
    assert timed["silence"]["speech_s"].flag == "no speech found"


def test_silero_vad_is_the_detector_when_installed(scores):
    if quality.silero_source() is None:
        pytest.skip("silero-vad is not installed (pip install 'ttsopt[quality]')")
    for name in ("clean", "last word cut", "babble tail"):
        assert "silero-vad" in scores[name]["ends_in_speech"].source, name
        assert "silero-vad" in scores[name]["letters_per_speech_s"].source, name


def test_score_prints_every_metric_with_its_source_for_an_espeak_clip(tmp_path, capsys, clips):
    clip, base = tmp_path / "clip.wav", tmp_path / "base.wav"
    sf.write(str(clip), clips["4.9 kHz tone"], SR)
    sf.write(str(base), clips["clean"], SR)
    assert cli.main(["score", str(clip), "--text", TEXT, "--baseline", str(base), "--reference", str(base),
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"word_error_rate", "voice_similarity", "mos", "pesq_wb", "stoi", "log_mel_distance_db", "tone_share",
            "letters_per_speech_s"} <= set(out["metrics"])
    assert all(m["source"] for m in out["metrics"].values()) and out["problems"]


def test_the_report_scores_espeak_clips_as_run_audio_with_real_numbers(tmp_path, clips):
    from ttsopt.core import records
    from ttsopt.core.records import Store, TrialRecord
    from ttsopt.report import html, table

    store = Store(tmp_path, "noisy")
    common = dict(run_id="noisy", variant="noisy", role="variant", design="in-process", source="local:/weights",
                  device="cpu", profile="smoke")
    for side in ("baseline", "variant"):
        store.append(TrialRecord(**common, phase="load", side=side, wall_s=1.0, mem={"rss_resident_mb": 100.0}))
    clip = {"baseline": clips["clean"], "variant": clips["noise 0 dB"]}
    for pair, seed in enumerate((0, 1)):
        for side in ("baseline", "variant"):
            scored = quality.as_record(quality.score(clip[side], SR, text=TEXT))
            store.append(TrialRecord(**common, phase="trial", side=side, pair=pair, prompt_id="p", seed=seed, trial=0,
                                     n_tokens=100, audio_s=4.0, wall_s=2.0 if side == "baseline" else 1.0, rtf=0.5,
                                     quality=scored))
    row = table.table(records.load(tmp_path))[0].iloc[0]
    assert row["wer_variant"] > row["wer_baseline"] and row["quality_loss"]
    page = html.build(tmp_path, pages=False).read_text()
    assert f"word error rate {row['wer_baseline']:.2f} → {row['wer_variant']:.2f}" in page


def test_the_same_voice_saying_other_words_is_closer_than_another_voice(tmp_path, clips):
    other_words = speak("Six spoons of fresh snow peas, five thick slabs of blue cheese.", tmp_path / "same.wav")
    other_voice = speak("Six spoons of fresh snow peas, five thick slabs of blue cheese.", tmp_path / "f.wav", "en+f3")
    reference = (clips["clean"], SR)
    same = quality.score(other_words, SR, reference=reference)["voice_similarity"]
    other = quality.score(other_voice, SR, reference=reference)["voice_similarity"]
    assert "resemblyzer" in same.source
    assert same.value > other.value + 0.1, (same.value, other.value)
