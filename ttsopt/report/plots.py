"""The report's figures. Each function takes tidy records (`core.records.load`) or the verdict table
(`report.table.table`) and returns a matplotlib Figure, or None when there is nothing to draw;
nothing here computes a verdict."""
from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from ..core.claims import METRICS
from ..core.stats import DEFAULTS
from ..core.vocab import STAGES, Phase, Role, Side, Status, Verdict

sns.set_theme(style="whitegrid", context="notebook")
VERDICT_COLORS = {Verdict.FASTER: "#2a9d4b", Verdict.SMALLER: "#2a9d4b", Verdict.SLOWER: "#c0392b",
                  Verdict.LARGER: "#c0392b", Verdict.NO_CHANGE: "#7f8c8d", Verdict.INCONCLUSIVE: "#e1a23b",
                  Verdict.NOISE_FLOOR: "#34495e"}


def _trials(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["phase"] == Phase.TRIAL) & (df["status"] == Status.OK)]


def before_after(df: pd.DataFrame, run_id: str, metric: str = "rtf"):
    """Per prompt: every trial of both sides of RUN_ID, with the median of each."""
    t = _trials(df[df["run_id"] == run_id])
    if t.empty or metric not in t.columns:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    order = [s for s in (Side.BASELINE, Side.VARIANT) if s in set(t["side"])]
    sns.stripplot(data=t, x="prompt_id", y=metric, hue="side", hue_order=order, dodge=True, alpha=0.5, ax=ax,
                  legend=False)
    sns.pointplot(data=t, x="prompt_id", y=metric, hue="side", hue_order=order, dodge=0.4, estimator="median",
                  errorbar=None, linestyle="none", markers="D", ax=ax)
    ax.set(xlabel="prompt", ylabel=f"{metric.upper()} (lower is faster)",
           title=f"{run_id}: both sides' trials and medians")
    ax.legend(title=None)
    fig.tight_layout()
    return fig


def stage_breakdown(df: pd.DataFrame):
    """Median seconds per stage for each run's sides, stacked: where the time goes."""
    t = _trials(df)
    cols = [f"stage_{s}" for s in STAGES if f"stage_{s}" in t.columns]
    if t.empty or not cols:
        return None
    med = t.groupby(["run_id", "side"], sort=False)[cols].median().rename(columns=lambda c: c.removeprefix("stage_"))
    med.index = [f"{run} ({side})" for run, side in med.index]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(med) + 1.8))
    med.plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.75)
    ax.invert_yaxis()
    ax.set(xlabel="median seconds per synthesis (measured trials)", ylabel="",
           title="Where the time goes, stage by stage")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


# Each memory metric by its own name (`measure.memory`), in the order the report shows them.
MEMORY_LABELS = {"mem_rss_resident_mb": "resident after load (RSS)",
                 "mem_rss_synth_peak_mb": "synthesis peak above resident (RSS)",
                 "mem_params_mb": "weights (parameters and buffers)",
                 "mem_cuda_resident_mb": "CUDA resident after load",
                 "mem_cuda_synth_peak_mb": "CUDA synthesis peak above resident",
                 "mem_cuda_reserved_mb": "CUDA allocator reserve",
                 "mem_nvml_process_used_mb": "GPU memory the driver reports (NVML)"}


def memory(df: pd.DataFrame):
    """Each named memory metric per run, baseline side beside variant side (median over records)."""
    cols = [c for c in MEMORY_LABELS if c in df.columns and df[c].notna().any()]
    ok = df[df["status"] == Status.OK]
    if ok.empty or not cols:
        return None
    long = (ok.groupby(["run_id", "side"])[cols].median().reset_index()
            .melt(id_vars=["run_id", "side"], var_name="metric", value_name="MiB").dropna())
    long["metric"] = long["metric"].map(MEMORY_LABELS)
    g = sns.catplot(data=long, kind="bar", y="run_id", x="MiB", hue="side", col="metric", col_wrap=min(3, len(cols)),
                    sharex=False, height=0.3 * long["run_id"].nunique() + 1.8, aspect=1.2,
                    hue_order=[Side.BASELINE, Side.VARIANT])
    g.set_titles("{col_name}")
    g.set_axis_labels("MiB", "")
    g.figure.suptitle("Memory, each metric separately", y=1.02)
    return g.figure


def _ratio_axis(ax, which: str = "x") -> None:
    """A log axis for ratios, labelled 0.5, 1, 2 rather than in powers of ten."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


def _with_ratio(rows: pd.DataFrame, prefix: str) -> pd.DataFrame:
    ratio = pd.to_numeric(rows.get(f"{prefix}ratio", pd.Series(np.nan, index=rows.index)), errors="coerce")
    return rows[np.isfinite(ratio)]


def _band_strips(ax, t: pd.DataFrame, bands: dict) -> None:
    """Shade each row's band: the one its design's A/A run set, so rows of different designs differ."""
    labelled = set()
    for yi, design in enumerate(t["design"]):
        band = bands.get(design, DEFAULTS.min_effect)
        label = None if design in labelled else f"band ±{band:.0%} ({design or 'no design'})"
        labelled.add(design)
        ax.fill_betweenx([yi - 0.5, yi + 0.5], 1 - band, 1 + band, color="#bdc3c7", alpha=0.5, lw=0, label=label)


def _forest_panel(ax, t: pd.DataFrame, prefix: str, title: str, bands: dict) -> None:
    _band_strips(ax, t, bands)
    ax.axvline(1, color="black", lw=1)
    for yi, r in enumerate(t.to_dict("records")):
        ratio, low, high = (float(r[f"{prefix}{k}"]) for k in ("ratio", "ci_low", "ci_high"))
        err = [[ratio - low], [high - ratio]] if np.isfinite(low) else None
        ax.errorbar(ratio, yi, xerr=err, fmt="o", color=VERDICT_COLORS.get(r[f"{prefix}verdict"], "#7f8c8d"),
                    capsize=3)
    metric = (lambda r: "rtf") if prefix else (lambda r: r.get("metric") or "rtf")
    ax.set_yticks(range(len(t)), [f"{r['run_id']} ({metric(r)}, n = {int(r[f'{prefix}n'] or 0)})"
                                  for r in t.to_dict("records")])
    ax.set_ylim(len(t) - 0.5, -0.5)
    _ratio_axis(ax)
    ax.set(xlabel=f"ratio variant / baseline (below 1: less), {DEFAULTS.confidence:.0%} interval",
           title=f"Every run on {title}")
    ax.legend(loc="lower right", fontsize="small")


def forest(rows: pd.DataFrame, facts: dict):
    """Every run's ratio on its claim's metric (left) and on RTF (right), with their intervals and n,
    coloured by verdict, against the band of its design."""
    panels = [(p, title, _with_ratio(rows, p)) for p, title in (("", "the claim's own metric"), ("rtf_", "RTF"))]
    panels = [p for p in panels if not p[2].empty]
    if not panels:
        return None
    height = 0.45 * max(len(t) for _, _, t in panels) + 1.8
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), height), squeeze=False)
    for ax, (prefix, title, t) in zip(axes[0], panels):
        _forest_panel(ax, t, prefix, title, facts.get("bands", {}))
    fig.tight_layout()
    return fig


def claimed_vs_measured(rows: pd.DataFrame):
    """Every claim that states a number, time, memory and cold start alike: the claimed ratio (a bar
    for a range, a diamond for a single figure) beside the measured one with its interval."""
    items = []
    for r in rows.to_dict("records"):
        for c in r.get("claim_verdicts") or []:
            measured = c.get("ratio")
            if c.get("claimed") and measured is not None and np.isfinite(measured):
                label = METRICS[c["metric"]].label if c["metric"] in METRICS else c["metric"]
                items.append((f"{r['run_id']}: {label}", *c["claimed"], measured, c.get("ci_low"), c.get("ci_high")))
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(items) + 1.8))
    for i, (_, c_lo, c_hi, m, m_lo, m_hi) in enumerate(items):
        first = i == 0
        if c_lo == c_hi:
            ax.plot(c_lo, i - 0.12, marker="D", color="#e67e22", markersize=9, linestyle="none",
                    label="claimed (one figure)" if first else None)
        else:
            ax.plot([c_lo, c_hi], [i - 0.12] * 2, color="#e67e22", lw=6, solid_capstyle="butt",
                    label="claimed (range)" if first else None)
        err = [[m - m_lo], [m_hi - m]] if m_lo is not None and np.isfinite(m_lo) and m_lo != m_hi else None
        ax.errorbar(m, i + 0.12, xerr=err, fmt="o", color="#2c3e50", capsize=3,
                    label=f"measured ({DEFAULTS.confidence:.0%} interval)" if first else None)
    ax.axvline(1, color="black", lw=1)
    ax.set_yticks(range(len(items)), [it[0] for it in items])
    ax.invert_yaxis()
    _ratio_axis(ax)
    ax.set(xlabel="ratio variant / baseline on the claim's metric (below 1: less time or memory)",
           title="Claimed against measured ('N% faster' read as N% less)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def _rho_title(what: str, rho) -> str:
    return what + (f" (Spearman rho {rho:+.2f})" if rho is not None and np.isfinite(rho) else "")


def _scatter_positions(ax, t: pd.DataFrame, column: str) -> None:
    ax.scatter(t["suite_position"], t[column], color="#4c72b0")
    for r in t.to_dict("records"):
        ax.annotate(r["run_id"], (r["suite_position"], r[column]), fontsize="x-small", rotation=30,
                    xytext=(3, 3), textcoords="offset points")


def drift(rows: pd.DataFrame, facts: dict):
    """The baseline side's median RTF of each run against its place in the suite (left), and each
    variant's RTF ratio against the same (right): a machine that slows down or speeds up over a
    suite shows on the left; a ratio that follows the place rather than the variant, on the right."""
    if "baseline_rtf" not in rows.columns:
        return None
    base = rows.dropna(subset=["suite_position", "baseline_rtf"])
    ratios = rows[rows["role"] == Role.VARIANT].dropna(subset=["suite_position", "rtf_ratio"]) \
        if "rtf_ratio" in rows.columns else rows.iloc[0:0]
    if len(base) < 2:
        return None
    d = facts.get("drift") or {}
    fig, axes = plt.subplots(1, 2 if len(ratios) >= 2 else 1, figsize=(13 if len(ratios) >= 2 else 7, 3.6),
                             squeeze=False)
    _scatter_positions(axes[0][0], base, "baseline_rtf")
    axes[0][0].set(xlabel="place in the suite", ylabel="baseline side's median RTF",
                   title=_rho_title("Baseline drift over the suite", d.get("baseline_rtf_rho")))
    if len(ratios) >= 2:
        _scatter_positions(axes[0][1], ratios, "rtf_ratio")
        axes[0][1].axhline(1, color="black", lw=1)
        axes[0][1].set(xlabel="place in the suite", ylabel="RTF ratio variant / baseline",
                       title=_rho_title("Ratios over the suite", d.get("ratio_rho")))
    fig.tight_layout()
    return fig


def cost_by_length(costs: pd.DataFrame):
    """Seconds per stage against the prompt's length in characters (`measure.profiler.cost_by_length`)."""
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


def bench_figure(trials: dict, floor: dict | None = None, flow_floor: dict | None = None):
    """`ttsopt bench --save`: where each side's time goes (median seconds per stage), T3's
    measured time per token against the memory floor of the bytes each side reads, and the flow's
    measured time against the compute floor of the arithmetic it does."""
    stages = [s for s in STAGES if any(s in t["stages"] for side in trials.values() for t in side)]
    med = {side: {s: float(np.median([t["stages"].get(s, 0.0) for t in rows])) for s in stages}
           for side, rows in trials.items()}
    wall = {side: float(np.median([t["wall_s"] for t in rows])) for side, rows in trials.items()}
    panels = 1 + bool(floor) + bool(flow_floor)
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
        gain = f"  (medians' ratio {wall[sides[0]] / wall[side]:.2f}x)" if i else ""
        ax.text(left[i], i, f" {wall[side]:.2f} s wall{gain}", va="center")
    ax.invert_yaxis()
    ax.set(xlabel="seconds (median of trials)", xlim=(0, max(wall.values()) * 1.6),
           title="one synthesis, stage by stage")
    ax.legend(fontsize="small", ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    panel = iter(axes[0][1:])
    if floor:
        _against_floor(next(panel), floor, "step_ms", "floor_ms", "ms per T3 token",
                       "memory floor (bytes read / bandwidth)",
                       f"T3 step vs its memory floor ({floor['read_bandwidth_gb_s']:.1f} GB/s read)")
    if flow_floor:
        _against_floor(next(panel), flow_floor, "flow_s", "floor_s", "seconds per flow call",
                       "compute floor (FLOPs / best multiply rate)", "S3Gen flow vs its compute floor")
    fig.tight_layout()
    return fig


def _against_floor(ax, floor: dict, measured_key: str, floor_key: str, unit: str, floor_label: str, title: str):
    """Each side's measured time beside the floor it cannot go under."""
    names = ["baseline", "fast"]
    measured = [floor[n][measured_key] for n in names]
    floors = [floor[n][floor_key] for n in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, measured, 0.4, label=f"measured {unit}", color="#34495e")
    ax.bar(x + 0.2, floors, 0.4, label=floor_label, color="#95a5a6")
    for xi, (m, f) in enumerate(zip(measured, floors)):
        ax.text(xi - 0.2, m, f"{m:.2f}", ha="center", va="bottom", fontsize="small")
        ax.text(xi + 0.2, f, f"{f:.2f}", ha="center", va="bottom", fontsize="small")
    ax.set_xticks(x, names)
    ax.set(ylabel=unit, ylim=(0, max(measured) * 1.2), title=title)
    ax.legend(fontsize="small")
