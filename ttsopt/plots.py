"""The report's figures. Each function takes tidy records (`results.load`) or the summary table
(`summary.table`) and returns a matplotlib Figure; nothing here computes a verdict."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .pipeline import STAGES
from .summary import claimed_change

sns.set_theme(style="whitegrid", context="notebook")
VERDICT_COLORS = {"faster": "#2a9d4b", "slower": "#c0392b", "no measurable change": "#7f8c8d",
                  "noise floor": "#34495e"}


def _trials(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["phase"] == "trial") & (df["status"] == "ok")]


def before_after(df: pd.DataFrame, run_id: str, baseline_run: str = "baseline", metric: str = "rtf"):
    """Per prompt: every trial of the baseline and of RUN_ID, with the median and its 95% interval."""
    t = _trials(df[df["run_id"].isin([baseline_run, run_id])]).copy()
    if t.empty:
        return None
    t["run"] = np.where(t["run_id"] == run_id, run_id, "baseline")
    order = [name for name in ("baseline", run_id) if name in set(t["run"])]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.stripplot(data=t, x="prompt_id", y=metric, hue="run", hue_order=order, dodge=len(order) > 1, alpha=0.5, ax=ax,
                  legend=False)
    sns.pointplot(data=t, x="prompt_id", y=metric, hue="run", hue_order=order, dodge=0.4 if len(order) > 1 else False,
                  estimator="median",
                  errorbar=("ci", 95), linestyle="none", markers="D", capsize=0.1, ax=ax)
    ax.set(xlabel="prompt", ylabel=f"{metric.upper()} (lower is faster)",
           title=f"{run_id} against the baseline: trials, median and 95% interval")
    ax.legend(title=None)
    fig.tight_layout()
    return fig


def stage_breakdown(df: pd.DataFrame):
    """Median seconds per stage for each run, stacked: where each run spends its time."""
    t = _trials(df)
    cols = [f"stage_{s}" for s in STAGES if f"stage_{s}" in t.columns]
    if t.empty or not cols:
        return None
    med = t.groupby("run_id", sort=False)[cols].median().rename(columns=lambda c: c.removeprefix("stage_"))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(med) + 1.8))
    med.plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.75)
    ax.invert_yaxis()
    ax.set(xlabel="median seconds per synthesis (measured trials)", ylabel="",
           title="Where the time goes, stage by stage")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def memory(df: pd.DataFrame):
    """Peak of each memory metric per run, one panel per metric, each under its own name."""
    t = _trials(df)
    cols = [c for c in t.columns if c.startswith("mem_") and c.endswith("_mb") and t[c].notna().any()]
    if t.empty or not cols:
        return None
    long = (t.groupby("run_id", sort=False)[cols].max().reset_index()
            .melt(id_vars="run_id", var_name="metric", value_name="MiB").dropna())
    long["metric"] = long["metric"].str.removeprefix("mem_").str.removesuffix("_mb")
    g = sns.catplot(data=long, kind="bar", y="run_id", x="MiB", col="metric", col_wrap=min(3, len(cols)),
                    sharex=False, height=0.32 * long["run_id"].nunique() + 1.5, aspect=1.2, color="#4c72b0")
    g.set_titles("{col_name} (MiB)")
    g.set_axis_labels("MiB", "")
    g.figure.suptitle("Memory, each metric separately (peak over measured trials)", y=1.02)
    return g.figure


def forest(table: pd.DataFrame, noise_floor: float | None):
    """Every compared run's RTF ratio with its 95% interval, against the A/A noise band."""
    t = table[np.isfinite(table["ratio"].astype(float))]
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(t) + 1.6))
    y = np.arange(len(t))
    if noise_floor:
        ax.axvspan(1 - noise_floor, 1 + noise_floor, color="#bdc3c7", alpha=0.5, label="A/A noise band")
    ax.axvline(1, color="black", lw=1)
    colors = [VERDICT_COLORS.get(v, "#7f8c8d") for v in t["verdict"]]
    for yi, color, (ratio, low, high) in zip(y, colors, t[["ratio", "ci_low", "ci_high"]].to_numpy(float)):
        ax.errorbar(ratio, yi, xerr=[[ratio - low], [high - ratio]], fmt="o", color=color, capsize=3)
    ax.set_yticks(y, t["run_id"])
    ax.invert_yaxis()
    ax.set(xlabel="RTF ratio, variant / baseline (below 1 is faster), 95% interval",
           title="Every variant against the baseline")
    if noise_floor:
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def claimed_vs_measured(table: pd.DataFrame):
    """Claimed time ratio (from the claim's percentage) beside the measured one, where a claim states one."""
    rows = []
    for r in table.to_dict("records"):
        claimed = claimed_change(r.get("claim", ""))
        if claimed and claimed[0] == "time" and np.isfinite(r["ratio"]):
            rows.append((r["run_id"], claimed[1], claimed[2], r["ratio"], r["ci_low"], r["ci_high"]))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.6))
    for i, (name, c_lo, c_hi, m, m_lo, m_hi) in enumerate(rows):
        ax.plot([c_lo, c_hi], [i - 0.12] * 2, color="#e67e22", lw=6, solid_capstyle="butt",
                label="claimed" if i == 0 else None)
        ax.errorbar(m, i + 0.12, xerr=[[m - m_lo], [m_hi - m]], fmt="o", color="#2c3e50", capsize=3,
                    label="measured (95% interval)" if i == 0 else None)
    ax.axvline(1, color="black", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="time ratio, optimized / baseline (below 1 is faster)",
           title="Claimed against measured ('N% faster' read as N% less time)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def cost_by_length(costs: pd.DataFrame):
    """Seconds per stage against the prompt's length in characters (`profiling.cost_by_length`)."""
    cols = [c for c in costs.columns if c.startswith("stage_")]
    long = costs.melt(id_vars=["chars"], value_vars=cols, var_name="stage", value_name="seconds")
    long["stage"] = long["stage"].str.removeprefix("stage_")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.lineplot(data=long, x="chars", y="seconds", hue="stage", marker="o", ax=ax)
    ax.set(xlabel="prompt length (characters)", ylabel="seconds", title="Cost against text length")
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def bench_figure(trials: dict, floor: dict | None = None):
    """`ttsopt bench --save`: where each side's time goes (median seconds per stage), and T3's
    measured time per token against the memory floor of the bytes each side reads."""
    stages = [s for s in STAGES if any(s in t["stages"] for side in trials.values() for t in side)]
    med = {side: {s: float(np.median([t["stages"].get(s, 0.0) for t in rows])) for s in stages}
           for side, rows in trials.items()}
    wall = {side: float(np.median([t["wall_s"] for t in rows])) for side, rows in trials.items()}
    panels = 2 if floor else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.0), squeeze=False)
    ax = axes[0][0]
    sides = list(trials)
    colors = sns.color_palette("tab10", len(stages))
    left = np.zeros(len(sides))
    for s, c in zip(stages, colors):
        widths = np.array([med[side][s] for side in sides])
        ax.barh(sides, widths, left=left, color=c, label=s)
        left += widths
    for i, side in enumerate(sides):
        gain = f"  {wall[sides[0]] / wall[side]:.2f}x" if i else ""
        ax.text(left[i], i, f" {wall[side]:.2f} s wall{gain}", va="center")
    ax.invert_yaxis()
    ax.set(xlabel="seconds (median of trials)", xlim=(0, max(wall.values()) * 1.35),
           title="one synthesis, stage by stage")
    ax.legend(fontsize="small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    if floor:
        ax = axes[0][1]
        names = ["baseline", "fast"]
        measured = [floor[n]["step_ms"] for n in names]
        floors = [floor[n]["floor_ms"] for n in names]
        x = np.arange(len(names))
        ax.bar(x - 0.2, measured, 0.4, label="measured ms per token", color="#34495e")
        ax.bar(x + 0.2, floors, 0.4, label="memory floor (bytes read / bandwidth)", color="#95a5a6")
        for xi, (m, f) in enumerate(zip(measured, floors)):
            ax.text(xi - 0.2, m, f"{m:.1f}", ha="center", va="bottom", fontsize="small")
            ax.text(xi + 0.2, f, f"{f:.1f}", ha="center", va="bottom", fontsize="small")
        ax.set_xticks(x, names)
        ax.set(ylabel="ms per T3 token", ylim=(0, max(measured) * 1.2),
               title=f"T3 step vs its memory floor ({floor['read_bandwidth_gb_s']:.1f} GB/s read)")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
