"""Verdicts from replicates that carry the process and time effects.

A run's replicates are made by its design (`vocab.Design`): in one process, interleaved pairs
of a baseline and a variant trial (A B, B A, ...), each pair one replicate; or across
processes, one baseline and one variant process per round, each round one replicate. Either
way a replicate is one ratio variant / baseline of a lower-is-better metric, and the verdict
is read from the interval of their geometric mean:

- the interval is Student's t on the mean log ratio: exact for normally distributed log
  ratios at any number of replicates, where the percentile bootstrap falls well short of its
  nominal coverage at the handful of replicates a suite can afford;
- a band of ±`min_effect` around 1 (widened to the A/A run's own offset when that is larger)
  is the smallest change a verdict may name;
- the whole interval below the band is "faster" (or "less memory"), above it "slower" ("more
  memory"); the whole interval inside the band is "no measurable change"; anything else is
  "inconclusive", shown with its number of replicates, because more of them would decide it.

Defaults and their reasons live in `Defaults`; conventions follow criterion.rs, pyperf and asv.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .vocab import Design, Phase, Side, Status, Verdict


@dataclass(frozen=True)
class Defaults:
    # 95%: the confidence level of criterion.rs, pyperf and asv alike.
    confidence: float = 0.95
    # The equivalence margin: whole-model timings of separate processes on a shared machine
    # differ by a few percent for reasons no optimization controls (memory placement, thread
    # placement, neighbours), so a smaller change is not worth a claim. The A/A run widens it
    # when its own offset is larger.
    min_effect: float = 0.05
    # Two replicates give an interval at all (one degree of freedom); with fewer the verdict is
    # "inconclusive" without one.
    min_replicates: int = 2
    # Memory metrics below this many MiB on the baseline side are too small for a ratio to mean
    # anything (a growth of 2 MiB against 1 MiB is not "twice the memory").
    min_memory_mb: float = 16.0


DEFAULTS = Defaults()


@dataclass(frozen=True)
class Comparison:
    metric: str
    column: str
    ratio: float       # variant / baseline, geometric mean over replicates
    ci_low: float
    ci_high: float
    p_value: float     # one-sample t test of the log ratios against 0
    n: int             # replicates
    unit: str          # what a replicate is: "pairs", "rounds" or "measurements"
    band: float        # relative change below which no direction is named
    verdict: Verdict
    baseline_median: float
    variant_median: float
    kind: str = "time"  # what the ratio measures, for the direction words: "time" or "memory"

    def as_dict(self) -> dict:
        return {k: (v.value if isinstance(v, Verdict) else v) for k, v in self.__dict__.items()}

    def gain(self, higher_is_better: bool) -> tuple[float, float, float]:
        """(gain, low, high) read so that above 1 is better: the ratio itself for a throughput,
        its inverse (interval flipped) for a time."""
        if higher_is_better:
            return self.ratio, self.ci_low, self.ci_high
        return 1 / self.ratio, 1 / self.ci_high, 1 / self.ci_low

    def reading(self, higher_is_better: bool) -> str:
        """The verdict as a table row shows it, with "faster" meaning the better direction for a
        throughput too (its interval is flipped before `decide`), and memory's words ("less memory")
        for a memory ratio; "inconclusive" carries its n."""
        low, high = (1 / self.ci_high, 1 / self.ci_low) if higher_is_better else (self.ci_low, self.ci_high)
        finite = math.isfinite(low) and math.isfinite(high)
        verdict = decide(low, high, self.band, self.kind) if finite else Verdict.INCONCLUSIVE
        return f"{verdict} (n = {self.n})" if verdict == Verdict.INCONCLUSIVE else str(verdict)


def _ok(df: pd.DataFrame, phase: str, column: str) -> pd.DataFrame:
    """The ok records of PHASE with a positive COLUMN: a ratio needs a positive value on both sides,
    and a zero (a synthesis that grew no memory above resident, say) cannot be one. The replicate
    count then shows how many were left."""
    df = df[(df["phase"] == phase) & (df["status"] == Status.OK)]
    if column not in df.columns:  # records that never measured it (older ones, or a stage a run lacks)
        return df.iloc[0:0].assign(_v=pd.Series(dtype=float))
    d = df.assign(_v=pd.to_numeric(df[column], errors="coerce")).dropna(subset=["_v"])
    return d[d["_v"] > 0]


def log_ratios(df: pd.DataFrame, column: str, phase: str, design: str) -> tuple[np.ndarray, str, float, float]:
    """(log ratio per replicate, what a replicate is, baseline median, variant median) of one run."""
    d = _ok(df, phase, column)
    base, var = d[d["side"] == Side.BASELINE], d[d["side"] == Side.VARIANT]
    medians = float(base["_v"].median()) if len(base) else math.nan, float(var["_v"].median()) if len(var) else math.nan
    if design == Design.IN_PROCESS and phase in (Phase.TRIAL, Phase.STREAM, Phase.BATCH):  # both sides once per pair
        b, v = base.groupby("pair")["_v"].first(), var.groupby("pair")["_v"].first()
        common = b.index.intersection(v.index)
        return np.log(v[common].to_numpy(float) / b[common].to_numpy(float)), "pairs", *medians
    if design == Design.CROSS_PROCESS:
        rounds = []
        for _, r in d.groupby("round"):
            keys = ["prompt_id", "seed"] if phase == Phase.TRIAL else ["process"]
            rb = r[r["side"] == Side.BASELINE]
            rv = r[r["side"] == Side.VARIANT]
            if phase != Phase.TRIAL:  # one value per process: the round's ratio is the two values'
                if len(rb) and len(rv):
                    rounds.append(math.log(rv["_v"].median() / rb["_v"].median()))
                continue
            mb, mv = rb.groupby(keys)["_v"].median(), rv.groupby(keys)["_v"].median()
            common = mb.index.intersection(mv.index)
            if len(common):
                rounds.append(float(np.mean(np.log(mv[common].to_numpy(float) / mb[common].to_numpy(float)))))
        return np.array(rounds), "rounds", *medians
    # One value per side (resident memory in one process): a single measurement each.
    if len(base) and len(var):
        return np.array([math.log(medians[1] / medians[0])]), "measurements", *medians
    return np.array([]), "measurements", *medians


def interval(logs: np.ndarray, d: Defaults = DEFAULTS) -> tuple[float, float, float, float]:
    """(ratio, low, high, p) from replicate log ratios; a single value gives a point interval."""
    n = len(logs)
    mean = float(np.mean(logs))
    if n == 1:
        return math.exp(mean), math.exp(mean), math.exp(mean), math.nan
    sd = float(np.std(logs, ddof=1))
    if sd == 0.0:
        return math.exp(mean), math.exp(mean), math.exp(mean), 1.0 if mean == 0 else 0.0
    half = scipy_stats.t.ppf(0.5 + d.confidence / 2, n - 1) * sd / math.sqrt(n)
    p = float(scipy_stats.ttest_1samp(logs, 0.0).pvalue)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half), p


def decide(low: float, high: float, band: float, kind: str = "time") -> Verdict:
    """The verdict of an interval against the band; KIND names its direction words."""
    better, worse = (Verdict.FASTER, Verdict.SLOWER) if kind == "time" else (Verdict.SMALLER, Verdict.LARGER)
    if high < 1 - band:
        return better
    if low > 1 + band:
        return worse
    if low >= 1 - band and high <= 1 + band:
        return Verdict.NO_CHANGE
    return Verdict.INCONCLUSIVE


def compare(df: pd.DataFrame, column: str, *, metric: str = "rtf", kind: str = "time", phase: str = Phase.TRIAL,
            design: str = Design.IN_PROCESS, aa_offset: float = 0.0, d: Defaults = DEFAULTS) -> Comparison:
    """Compare the two sides of one run's records on COLUMN. AA_OFFSET: |ratio - 1| of the A/A run
    of the same design, which widens the band when it exceeds `min_effect`."""
    logs, unit, base_med, var_med = log_ratios(df, column, phase, design)
    if len(logs) == 0:
        raise ValueError(f"no replicate has an ok {column!r} value on both sides (phase {phase}, design {design})")
    return from_logs(logs, unit, base_med, var_med, metric=metric, column=column, kind=kind, aa_offset=aa_offset, d=d)


def from_logs(logs: np.ndarray, unit: str, base_med: float, var_med: float, *, metric: str, column: str,
              kind: str = "time", aa_offset: float = 0.0, d: Defaults = DEFAULTS) -> Comparison:
    """The comparison that replicate LOGS (log variant / baseline, one per UNIT) support: `compare`'s
    reading, for replicates gathered elsewhere (the step scripts' rounds, `measure.rounds`)."""
    band = max(d.min_effect, aa_offset)
    single = unit == "measurements"
    if kind == "memory" and not base_med >= d.min_memory_mb:
        ratio = math.exp(float(np.mean(logs)))
        return Comparison(metric, column, ratio, math.nan, math.nan, math.nan, len(logs), unit, band,
                          Verdict.INCONCLUSIVE, base_med, var_med, kind)
    if len(logs) < d.min_replicates and not single:
        ratio = math.exp(float(np.mean(logs)))
        return Comparison(metric, column, ratio, math.nan, math.nan, math.nan, len(logs), unit, band,
                          Verdict.INCONCLUSIVE, base_med, var_med, kind)
    ratio, low, high, p = interval(logs, d)
    return Comparison(metric, column, ratio, low, high, p, len(logs), unit, band, decide(low, high, band, kind),
                      base_med, var_med, kind)


def aa_offset(aa: Comparison | None) -> float:
    """How far the A/A run's own ratio sits from 1: the design's bias on this machine."""
    return abs(aa.ratio - 1) if aa is not None and math.isfinite(aa.ratio) else 0.0


def unstable(aa: Comparison | None) -> bool:
    """An A/A interval that excludes 1: the machine (or the design) moved between identical sides."""
    return aa is not None and math.isfinite(aa.ci_low) and (aa.ci_low > 1 or aa.ci_high < 1)


def drift(positions, values) -> tuple[float, float]:
    """Spearman's rho and its p of VALUES against their place in the suite."""
    s = pd.DataFrame({"x": positions, "y": values}).dropna()
    if len(s) < 3 or s["y"].nunique() < 2:
        return math.nan, math.nan
    rho, p = scipy_stats.spearmanr(s["x"], s["y"])
    return float(rho), float(p)
