"""`ttsopt score CLIP`: the quality checks of one wav (tails, cut-off ending, pauses, clipping, a
constant tone, a predicted MOS; with `--text` the speaking rate and an offline recogniser's word
error rate; with `--baseline` the distance to another clip; with `--reference` the voice's
similarity to a clip of the speaker), each with how it was computed. A table for people, `--json`
for scripts; exit 0 whether or not a check flags."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("score", help="check one wav for tails, cut-offs, clipping and tones; compare to a baseline")
    p.add_argument("clip", help="the wav file to check")
    p.add_argument("--text", default=None, help="the text the clip should say (gives the speaking rate)")
    p.add_argument("--baseline", default=None, help="the baseline's wav of the same text, to measure the distance")
    p.add_argument("--reference", default=None, help="a clip of the voice the clip should have (speaker similarity)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--model-free", action="store_true",
                   help="only the checks that need no model: skip the word error rate, the voice similarity and "
                        "the MOS (the recogniser alone takes about a third of the clip's duration), and find the "
                        "speech by its energy instead of with silero-vad")
    p.set_defaults(func=run)


def _read(path: str, what: str):
    import numpy as np
    import soundfile as sf

    if not Path(path).is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UserError(f"{what} {path} is not a readable audio file ({exc})") from None
    if wav.shape[0] == 0:
        raise UserError(f"{what} {path} holds no samples")
    return np.mean(wav, axis=1), int(sr)


def run(args: argparse.Namespace) -> int:
    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty: give the words the clip should say, or leave --text out")
    wav, sr = _read(args.clip, "clip")
    baseline = None
    if args.baseline:
        baseline, base_sr = _read(args.baseline, "baseline")
        if base_sr != sr:
            import librosa
            baseline = librosa.resample(baseline, orig_sr=base_sr, target_sr=sr)
    reference = _read(args.reference, "reference") if args.reference else None
    from ..measure import quality

    metrics = quality.score(wav, sr, text=args.text, baseline=baseline, models=not args.model_free,
                            reference=reference)
    if args.json:
        print(json.dumps({"clip": args.clip, "sample_rate": sr, "problems": quality.problems(metrics),
                          "metrics": {k: m.as_dict() for k, m in metrics.items()}}, sort_keys=True))
        return 0
    width = max(len(k) for k in metrics)
    for name, m in metrics.items():
        value = "–" if m.value is None else m.value
        print(f"{name:<{width}}  {value!s:>10} {m.unit:<18} {m.flag or ''}".rstrip())
        if m.note:
            print(f"{'':<{width}}  heard: {m.note!r}")
    found = quality.problems(metrics)
    print(f"{len(found)} problem(s) flagged" + (": " + "; ".join(found) if found else "")
          + ("" if not args.model_free else " (model-free checks only)"))
    return 0
