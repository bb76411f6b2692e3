"""`ttsopt bench`'s quality rows: both sides' clips of the first pair (which the runner saves as
audio/bench/<side>/bench.wav), scored after everything is timed.

Random weights speak noise, so a word error rate, a voice or a MOS of their clips would score
noise: they are not computed, and one line says quality needs real weights. What stays are the
baseline-relative measures of the fast side's clip against the baseline's (log-mel distance,
wideband PESQ, STOI), and only when both sides spoke the same number of tokens, so that the two
clips line up sample by sample. With real weights each side also gets its word error rate, its
predicted MOS and its voice in Chatterbox's own speaker space: the model's VoiceEncoder against
the speaker embedding of the voice the model speaks in (its conditionals).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.vocab import Phase, Side
from ..measure import quality

NEEDS_REAL_WEIGHTS = "quality: needs real weights (random weights speak noise)"
SIDES = {Side.BASELINE: "baseline", Side.VARIANT: "fast"}
PER_SIDE = (("word_error_rate", "word error rate"), ("voice_similarity_chatterbox", "voice similarity"),
            ("mos", "MOS (1-5)"))
RELATIVE = (("log_mel_distance_db", "log-mel distance dB"), ("pesq_wb", "PESQ wideband"), ("stoi", "STOI"))


def measure(out_dir, records: pd.DataFrame, run_id: str, baseline, text: str | None) -> dict:
    """The quality rows of run RUN_ID in OUT_DIR; BASELINE is the baseline's pipeline, whose
    model says whether the weights are random and lends its VoiceEncoder and voice."""
    import soundfile as sf

    clips = first_clips(records, run_id)
    if set(clips) != set(SIDES.values()):
        return {}
    wavs = {}
    for name, clip in clips.items():
        wav, sr = sf.read(str(Path(out_dir) / clip["path"]), dtype="float32")
        wavs[name] = (wav, sr)
    from .runner import voice_reference
    model = baseline.model
    encoder, speaker = (voice_reference(baseline) or (None, None)) if not model.random_weights else (None, None)
    out = score(wavs, {name: clip["tokens"] for name, clip in clips.items()}, text, model.random_weights,
                encoder, speaker)
    out["clips"] = clips
    return out


def first_clips(records: pd.DataFrame, run_id: str) -> dict:
    """{side name: {path, tokens, seed}} of each side's saved clip (the first pair's)."""
    if "audio_path" not in records:
        return {}
    trials = records[(records["run_id"] == run_id) & (records["phase"] == Phase.TRIAL)]
    saved = trials[trials["audio_path"].notna()]
    out = {}
    for side, name in SIDES.items():
        rows = saved[saved["side"] == side]
        if not rows.empty:
            row = rows.iloc[0]
            out[name] = {"path": str(row["audio_path"]), "tokens": int(row["n_tokens"]), "seed": int(row["seed"])}
    return out


def score(clips: dict[str, tuple[np.ndarray, int]], tokens: dict[str, int], text: str | None, random_weights: bool,
          encoder=None, speaker=None) -> dict:
    """CLIPS and TOKENS by side name (baseline, fast): the per-side metrics (real weights only;
    the voice with ENCODER and the SPEAKER embedding) and the fast side's against the baseline's."""
    out = {"random_weights": bool(random_weights), "sides": {}, "fast_vs_baseline": {}}
    if not random_weights:
        for name, (wav, sr) in clips.items():
            metrics = {"word_error_rate": quality.word_error_rate(wav, sr, text) if text is not None else
                       quality.Metric(None, "", "not computed: the recogniser speaks English only")}
            if encoder is not None and speaker is not None:
                metrics["voice_similarity_chatterbox"] = quality.chatterbox_similarity(encoder, wav, sr, speaker)
            metrics["mos"] = quality.naturalness(wav, sr)
            out["sides"][name] = metrics
    (base, sr), (fast, fast_sr) = clips["baseline"], clips["fast"]
    if tokens["baseline"] != tokens["fast"] or sr != fast_sr:
        why = (f"not computed: the sides spoke {tokens['baseline']} and {tokens['fast']} tokens, so their clips do "
               "not line up" if tokens["baseline"] != tokens["fast"] else
               f"not computed: the clips are at {sr} and {fast_sr} Hz")
        out["fast_vs_baseline"] = {key: quality.Metric(None, "", why) for key, _ in RELATIVE}
    else:
        out["fast_vs_baseline"] = {"log_mel_distance_db": quality.log_mel_distance(fast, base, sr),
                                   **quality.intrusive(fast, base, sr)}
    return out


def lines(q: dict) -> list[str]:
    """The printed rows: per side with real weights, then the fast side against the baseline."""
    if not q:
        return ["quality: not scored (no saved clip of each side)"]
    clips = q.get("clips", {})
    where = ", ".join(f"{name} {c['path']} ({c['tokens']} tokens, seed {c['seed']})" for name, c in clips.items())
    out = [f"quality of the first pair's clips{': ' + where if where else ''}"]
    if q["random_weights"]:
        out.append(NEEDS_REAL_WEIGHTS)
    else:
        out.append(f"{'quality':32s} {'baseline':>12s} {'fast':>12s}")
        for key, label in PER_SIDE:
            if key not in q["sides"].get("baseline", {}):
                continue
            b, f = q["sides"]["baseline"][key], q["sides"]["fast"][key]
            out.append(f"  {label:30s} {_value(b):>12s} {_value(f):>12s}  ({b.source})")
    out.append("fast against the baseline (clips of the same length, aligned; their tokens may differ, see the "
               "token match rate):")
    for key, label in RELATIVE:
        m = q["fast_vs_baseline"][key]
        out.append(f"  {label:30s} {_value(m):>12s}  ({m.source})")
    return out


def as_json(q: dict) -> dict:
    """Q with every metric as its dict (value, unit, source, flag, note): bench.quality.json."""
    if not q:
        return {}
    return {"random_weights": q["random_weights"], "clips": q.get("clips", {}),
            "sides": {name: {k: m.as_dict() for k, m in ms.items()} for name, ms in q["sides"].items()},
            "fast_vs_baseline": {k: m.as_dict() for k, m in q["fast_vs_baseline"].items()}}


def _value(m: quality.Metric) -> str:
    return "–" if m.value is None else f"{m.value:.3f}"
