"""The models of the Chatterbox family side by side: the same prompt, seeds, device and rules, each
model run as its own upstream `generate` does.

This is not a variant. Another model has other weights and emits other tokens, so there is no
fidelity to measure against the original, and with random weights there is no quality to
compare either: what can be compared is the work each does per second of audio. The design is
a suite's in-process one: every model loaded in one process, each warmed up once, then trials in
which every model synthesizes the same text with the same seed, the order rotating from trial to
trial; each trial is one replicate of each ratio against the first model. Random weights never
stop, so every model is forced to the same number of speech tokens (Turbo then appends its
three silence tokens, as upstream does, and renders 0.12 s more audio).

Records are `TrialRecord`s of the run `models` (one store), each naming its model; the first
model's records are the baseline side, the others' the variant side, so `stats.compare` reads a
model's ratio over the trials like any run's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import stats
from ..core.records import load
from ..core.vocab import Design, Phase, Side, Stage
from . import profiles
from .runner import RunConfig, _load_side, _Run, _synth

RUN_ID = "models"


@dataclass
class Models:
    records: pd.DataFrame
    names: tuple[str, ...]


def run(out_dir, *, names: tuple[str, ...], source: str, device: str, text: str, tokens: int, trials: int,
        seed: int, progress=None) -> Models:
    """Load every model of NAMES (the first is the reference), then TRIALS rounds of one synthesis
    each, the order rotated; PROGRESS(message) is told what runs."""
    say = progress or (lambda message: None)
    profile = profiles.Profile(RUN_ID, None, tuple(range(seed, seed + trials)), trials=1, rounds=0, cross_trials=0,
                               warmup_tokens=min(4, tokens), tokens=tokens, time_limit_s=0, fidelity_prompts=0)
    prompt = {"id": "models", "category": "models", "text": text}
    runs, pipelines = {}, {}
    for i, name in enumerate(names):
        cfg = RunConfig(out_dir=str(out_dir), source=source, model=name, device=device, run_id=RUN_ID,
                        profile="smoke", save_audio=False)
        runs[name] = _Run(cfg, Design.IN_PROCESS, profile)
        say(f"loading {name}")
        pipelines[name], _ = _load_side(runs[name], _side(i), "baseline")
    for i, name in enumerate(names):  # first calls, excluded: lazy initialisation
        say(f"warming up {name}")
        record, _ = _synth(runs[name], _side(i), pipelines[name], prompt, seed, Phase.WARMUP, profile.warmup_tokens)
        runs[name].write(record)
    for trial in range(trials):
        shift = trial % len(names)
        for name in names[shift:] + names[:shift]:
            say(f"trial {trial + 1}/{trials}: {name}")
            n = tokens if pipelines[name].model.random_weights else None
            record, _ = _synth(runs[name], _side(names.index(name)), pipelines[name], prompt, seed + trial,
                               Phase.TRIAL, n, trial=trial, pair=trial)
            runs[name].write(record)
    return Models(load(Path(out_dir))[lambda d: d["run_id"] == RUN_ID], tuple(names))


def _side(index: int) -> str:
    return Side.BASELINE if index == 0 else Side.VARIANT


ROWS = (  # label, column, phase, higher is better
    ("T3 tokens/s", "tokens_per_s", Phase.TRIAL, True),
    ("T3 prefill s", f"stage_{Stage.T3_PREFILL}", Phase.TRIAL, False),
    ("T3 decode s", f"stage_{Stage.T3_DECODE}", Phase.TRIAL, False),
    ("S3Gen flow s", f"stage_{Stage.S3GEN_FLOW}", Phase.TRIAL, False),
    ("vocoder s", f"stage_{Stage.VOCODER}", Phase.TRIAL, False),
    ("watermark s", f"stage_{Stage.WATERMARK}", Phase.TRIAL, False),
    ("end-to-end wall s", "wall_s", Phase.TRIAL, False),
    ("audio s", "audio_s", Phase.TRIAL, None),
    ("RTF (wall / audio)", "rtf", Phase.TRIAL, False),
    ("model weights MiB", "mem_params_mb", Phase.LOAD, None),
    ("resident after load MiB", "mem_rss_resident_mb", Phase.LOAD, None),
)


def table(records: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Median per model and, for each other model, its gain over the first with a 95% interval over
    the trials (first / other for times, other / first for throughput; above 1 is better)."""
    reference = names[0]
    rows = []
    for label, column, phase, higher in ROWS:
        if column not in records.columns:
            continue
        sel = records[records["phase"] == phase]
        row = {"metric (median)": label}
        for name in names:
            row[name] = pd.to_numeric(sel.loc[sel["model"] == name, column], errors="coerce").median()
        for name in names[1:]:
            row[f"{name} gain"], row[f"{name} 95% CI"] = _gain(sel, reference, name, column, higher)
        rows.append(row)
    return pd.DataFrame(rows)


def _gain(sel: pd.DataFrame, reference: str, other: str, column: str, higher: bool | None) -> tuple[float, str]:
    if higher is None:
        return math.nan, ""
    pair = sel[sel["model"].isin((reference, other))]
    c = stats.compare(pair, column, metric=column, design=Design.IN_PROCESS)
    if not math.isfinite(c.ci_low):
        ratio = c.ratio if higher else 1 / c.ratio
        return ratio, f"none (n = {c.n})"
    ratio, low, high = (c.ratio, c.ci_low, c.ci_high) if higher else (1 / c.ratio, 1 / c.ci_high, 1 / c.ci_low)
    return ratio, f"{low:.2f}–{high:.2f} (n = {c.n})"


def audio_per_wall(records: pd.DataFrame, name: str) -> float:
    """Seconds of audio per second of wall time, over the model's trials: 1 is real time."""
    t = records[(records["phase"] == Phase.TRIAL) & (records["model"] == name)]
    wall = pd.to_numeric(t["wall_s"], errors="coerce").to_numpy(float)
    audio = pd.to_numeric(t["audio_s"], errors="coerce").to_numpy(float)
    return float(np.sum(audio) / np.sum(wall)) if len(wall) else math.nan
