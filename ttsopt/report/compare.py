"""Suites side by side: does each verdict hold when the suite is measured again?

A verdict is worth something only if it repeats. Running the same suite again — another order
seed, another hour, the same machine — must keep the verdict of every large effect, and must
never call a variant that runs the baseline's code faster or slower. `compare` lines up the
verdict tables of several results folders by run and says, run by run, whether they agree; each
folder is described by what its records say (CPU, profile, order seed, how long it took), so a
comparison across machines is visible as one. Needs no torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..core import records
from . import table

CELL_FIELDS = ("verdict", "metric", "ratio", "ci_low", "ci_high", "n", "band")


def describe(directory: Path, df: pd.DataFrame, facts: dict) -> dict:
    """What a results folder holds, from its own records and manifest."""
    env = next(iter(records.load_env(directory).values()), {})
    manifest = {}
    if (directory / "suite.json").is_file():
        manifest = json.loads((directory / "suite.json").read_text(encoding="utf-8"))
    times = pd.to_datetime(df.get("time_utc", pd.Series(dtype=str)), utc=True, errors="coerce").dropna()
    minutes = round((times.max() - times.min()).total_seconds() / 60, 1) if len(times) else None
    cpu = env.get("cpu_model")
    return {"dir": str(directory), "profile": manifest.get("profile") or _distinct(df, "profile"),
            "source": manifest.get("source") or _distinct(df, "source"),
            "order_seed": manifest.get("order_seed"), "measured_min": minutes,
            "cpu": f"{cpu} ({env['cpu_units']})" if cpu and env.get("cpu_units") else cpu,
            "unstable": list(facts.get("unstable", [])), "bands": dict(facts.get("bands", {}))}


def _distinct(df: pd.DataFrame, column: str) -> str:
    return ", ".join(sorted({str(v) for v in df.get(column, pd.Series(dtype=str)).dropna()})) or "–"


def compare(dirs) -> tuple[pd.DataFrame, list[dict]]:
    """One row per run id found in any folder: each folder's verdict, ratio, interval and n, and
    whether the verdicts agree (a run missing from a folder counts as a disagreement)."""
    suites, cells = [], {}
    for i, d in enumerate(dirs):
        directory = Path(d)
        df = records.load(directory)
        rows, facts = table.table(df)
        suites.append(describe(directory, df, facts))
        for r in table.as_json_rows(rows) if len(rows) else []:
            cells.setdefault(r["run_id"], {"run_id": r["run_id"], "variant": r["variant"]})
            cells[r["run_id"]].update({f"{k}_{i}": r.get(k) for k in CELL_FIELDS})
    out = pd.DataFrame(list(cells.values()))
    verdicts = out[[f"verdict_{i}" for i in range(len(dirs))]]
    out["agree"] = verdicts.notna().all(axis=1) & (verdicts.nunique(axis=1, dropna=False) == 1)
    out["large"] = [_large(row, len(dirs)) for row in out.to_dict("records")]
    return out.sort_values("run_id", ignore_index=True), suites


def _large(row: dict, count: int) -> bool:
    """Does the effect exceed twice the noise band of its design in some suite? Such a verdict
    must repeat in every suite; a smaller one may fairly fall either side of its band."""
    for i in range(count):
        ratio, band = _number(row.get(f"ratio_{i}")), _number(row.get(f"band_{i}"))
        if ratio > 0 and band > 0 and abs(math.log(ratio)) > 2 * math.log1p(band):
            return True
    return False


def cell(row: dict, i: int) -> str:
    verdict = row.get(f"verdict_{i}")
    if not isinstance(verdict, str):
        return "absent"
    ratio = table.fmt_ratio(*[_number(row.get(f"{k}_{i}")) for k in ("ratio", "ci_low", "ci_high")],
                            _count(row.get(f"n_{i}")))
    metric = row.get(f"metric_{i}")
    return verdict + ("" if ratio == "–" else f" {ratio}") + (f" [{metric}]" if isinstance(metric, str) else "")


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _missing_as_none(value):
    return None if isinstance(value, float) and value != value else value


def _count(n):
    return int(n) if isinstance(n, (int, float)) and n == n else None


def markdown(out: pd.DataFrame, suites: list[dict]) -> str:
    """The comparison as a Markdown table, each folder described above it."""
    lines = [f"- suite {i + 1}: {s['dir']} — {s['cpu'] or 'CPU not recorded'}, profile {s['profile']}, "
             f"source {s['source']}, order seed {s['order_seed']}, measured over {s['measured_min']} min"
             + (f"; unstable machine ({', '.join(s['unstable'])})" if s["unstable"] else "")
             for i, s in enumerate(suites)]
    header = ["run", *[f"suite {i + 1}" for i in range(len(suites))], "effect > 2 bands", "same verdict"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in out.to_dict("records"):
        lines.append("| " + " | ".join([row["run_id"], *[cell(row, i) for i in range(len(suites))],
                                         "yes" if row["large"] else "no",
                                         "yes" if row["agree"] else "**no**"]) + " |")
    agree, large = int(out["agree"].sum()), out[out["large"]]
    lines += ["", f"{agree} of {len(out)} runs have the same verdict in all {len(suites)} suites; "
                  f"{int(large['agree'].sum())} of the {len(large)} whose effect exceeds twice its noise band "
                  "in some suite do."]
    return "\n".join(lines)


def json_rows(out: pd.DataFrame, suites: list[dict]) -> list[dict]:
    """One object per run: its verdict in each suite and whether they agree (for scripts)."""
    rows = []
    for row in out.to_dict("records"):
        per_suite = [{"dir": s["dir"], **{k: _missing_as_none(row.get(f"{k}_{i}")) for k in CELL_FIELDS}}
                     for i, s in enumerate(suites)]
        rows.append({"run_id": row["run_id"], "variant": row["variant"], "agree": bool(row["agree"]),
                     "large_effect": bool(row["large"]), "suites": per_suite})
    return rows
