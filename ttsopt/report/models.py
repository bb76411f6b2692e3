"""The models comparison (`ttsopt models`, records of the run `models`) as a table: each model's
median per stage, RTF and memory, and each model's gain over the first with its interval over the
trials. From records alone, like the rest of the report; the `models` command prints it and the
report's "Models" section shows it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core import stats
from ..core.vocab import MODELS_RUN_ID, Design, Phase, Side, Stage

ROWS = (  # label, column, phase, higher is better (None: shown without a gain)
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
    ("first audio when streaming s", "x_first_audio_s", Phase.STREAM, False),
    ("  of which the first chunk's flow s", "x_first_flow_s", Phase.STREAM, False),
    ("streaming RTF after the first chunk", "x_rest_rtf", Phase.STREAM, False),
    ("streaming whole wall s", "wall_s", Phase.STREAM, False),
)
NOTE = ("gain: the first model's time / the other's (throughput: the other's / the first's), the geometric mean "
        "over trials with its 95% interval; above 1 the other is faster. The models emit different tokens: "
        "there is no fidelity between them to measure, and with random weights no quality either.")


def records_of(df: pd.DataFrame) -> pd.DataFrame:
    """The models comparison's records in DF (empty when it holds none)."""
    return df[df["run_id"] == MODELS_RUN_ID] if "run_id" in df else df.iloc[0:0]


def names(records: pd.DataFrame) -> tuple[str, ...]:
    """The models compared, the reference (the baseline side) first."""
    loads = records[records["phase"] == Phase.LOAD]
    first = loads.loc[loads["side"] == Side.BASELINE, "model"].tolist()
    rest = loads.loc[loads["side"] == Side.VARIANT, "model"].tolist()
    return tuple(dict.fromkeys(first + rest))


def table(records: pd.DataFrame, models: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Median per model and, for each other model, its gain over the first with a 95% interval over
    the trials (first / other for times, other / first for throughput; above 1 is better) and the
    verdict that interval supports."""
    models = models or names(records)
    reference = models[0]
    rows = []
    for label, column, phase, higher in ROWS:
        sel = records[records["phase"] == phase]
        if column not in records.columns or sel.empty:  # streaming rows only when streams were timed
            continue
        row = {"metric (median)": label}
        for name in models:
            row[name] = pd.to_numeric(sel.loc[sel["model"] == name, column], errors="coerce").median()
        for name in models[1:]:
            row[f"{name} gain"], row[f"{name} 95% CI"], row[f"{name} verdict"] = _gain(sel, reference, name, column,
                                                                                      higher, phase)
        rows.append(row)
    return pd.DataFrame(rows)


def _gain(sel: pd.DataFrame, reference: str, other: str, column: str, higher: bool | None,
          phase: str = Phase.TRIAL) -> tuple[float, str, str]:
    """OTHER's gain over REFERENCE, its interval and the verdict the interval supports."""
    if higher is None:
        return math.nan, "", ""
    pair = sel[sel["model"].isin((reference, other))]
    try:
        c = stats.compare(pair, column, metric=column, design=Design.IN_PROCESS, phase=phase)
    except ValueError:  # no trial of one of them finished
        return math.nan, "no trials", ""
    ratio, low, high = c.gain(higher)
    return (ratio, f"{low:.2f}–{high:.2f} (n = {c.n})" if math.isfinite(low) else f"none (n = {c.n})",
            c.reading(higher))


def audio_per_wall(records: pd.DataFrame, name: str) -> float:
    """Seconds of audio per second of wall time over a model's trials: above 1 is faster than real time."""
    t = records[(records["phase"] == Phase.TRIAL) & (records["model"] == name)]
    wall = pd.to_numeric(t["wall_s"], errors="coerce").to_numpy(float)
    audio = pd.to_numeric(t["audio_s"], errors="coerce").to_numpy(float)
    return float(np.sum(audio) / np.sum(wall)) if len(wall) else math.nan


def section(df: pd.DataFrame, env: dict | None = None) -> dict | None:
    """What the report's "Models" section shows, or None when DF holds no models comparison. ENV: the
    comparison's environment (its machine may not be the suite's)."""
    records = records_of(df)
    if records.empty:
        return None
    models = names(records)
    trials = records[records["phase"] == Phase.TRIAL]
    shown = table(records, models)
    header = list(shown.columns)
    rows = [[_cell(v) for v in row] for row in shown.itertuples(index=False)]
    tokens = sorted({int(v) for v in pd.to_numeric(trials["forced_tokens"], errors="coerce").dropna()}) \
        if "forced_tokens" in trials else []
    return {"models": models, "header": header, "rows": rows, "note": NOTE,
            "trials": int(trials["trial"].nunique()) if "trial" in trials else 0,
            "tokens": ", ".join(map(str, tokens)) or "their natural stop",
            "speed": [(m, audio_per_wall(records, m)) for m in models],
            "sources": ", ".join(sorted({str(s) for s in records["source"].dropna()})),
            "machine": _machine(env or {}), "date": (env or {}).get("date_utc") or "–"}


def _machine(env: dict) -> str:
    if env.get("gpu_name"):
        return str(env["gpu_name"])
    model, units = env.get("cpu_model") or "an unrecorded machine", env.get("cpu_units")
    return f"{model} ({units})" if units else model


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)
