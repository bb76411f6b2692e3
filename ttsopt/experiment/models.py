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
model's ratio over the trials like any run's (`report.models` makes the table).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.records import load
from ..core.vocab import MODELS_RUN_ID, Design, Phase, Side
from ..measure import env as env_mod
from . import profiles
from .runner import RunConfig, _load_side, _Run, _stream_trial, _synth

RUN_ID = MODELS_RUN_ID


@dataclass
class Models:
    records: pd.DataFrame
    names: tuple[str, ...]


def run(out_dir, *, names: tuple[str, ...], source: str, device: str, text: str, tokens: int, trials: int,
        seed: int, stream: bool = False, progress=None) -> Models:
    """Load every model of NAMES (the first is the reference), then TRIALS rounds of one synthesis
    each, the order rotated; with STREAM each synthesis is followed by the same one streamed
    (`engine.stream`: the model's own T3 loop, S3Gen in chunks). PROGRESS(message) is told what runs."""
    say = progress or (lambda message: None)
    profile = profiles.Profile(RUN_ID, None, tuple(range(seed, seed + trials)), trials=1, rounds=0, cross_trials=0,
                               warmup_tokens=min(4, tokens), tokens=tokens, time_limit_s=0, fidelity_prompts=0)
    prompt = {"id": "models", "category": "models", "text": text}
    runs, pipelines = {}, {}
    for i, name in enumerate(names):
        cfg = RunConfig(out_dir=str(out_dir), source=source, model=name, device=device, run_id=RUN_ID,
                        profile="smoke", save_audio=False)
        runs[name] = _Run(cfg, Design.IN_PROCESS, profile)
        if i == 0:  # one process: one environment, naming every model compared
            runs[name].store.write_env(env_mod.capture(source, ",".join(names)))
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
            if stream:
                say(f"trial {trial + 1}/{trials}: {name} streamed")
                runs[name].write(_stream_trial(runs[name], _side(names.index(name)), pipelines[name], "models", text,
                                               seed + trial, n, trial))
    return Models(load(Path(out_dir))[lambda d: d["run_id"] == RUN_ID], tuple(names))


def _side(index: int) -> str:
    return Side.BASELINE if index == 0 else Side.VARIANT
