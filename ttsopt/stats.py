"""Verdicts for "is the variant faster than the baseline?" from paired samples.

Each (prompt, seed) pair is run by both sides; its trials are reduced to a median so one
stray trial cannot move a pair, and the pairs' ratios are combined as a geometric mean,
the only average under which "2x faster" and "2x slower" cancel. The ratio is always
variant / baseline of a lower-is-better metric (RTF, seconds): below 1 means faster.
"""

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Defaults:
    # 95%: the confidence level of criterion.rs, pyperf and asv alike.
    confidence: float = 0.95
    # 10,000 resamples leave ~250 in each 2.5% tail, enough for stable percentile limits.
    n_resamples: int = 10_000
    # 5%: criterion.rs's significance_level; matches the 95% interval.
    alpha: float = 0.05
    # 2%: below this a change is not worth a claim even when significant; criterion.rs's
    # 1% suits micro-benchmarks, whole-model runs in separate processes drift more.
    min_threshold: float = 0.02
    # Wilcoxon needs 6 pairs to be able to reach p < 0.05; fewer get an exact sign-flip
    # test, whose p is exact but cannot reach 0.05 either (5 pairs give at best 2/32).
    min_pairs_wilcoxon: int = 6
    # A fixed seed makes the same data give the same interval in every report.
    seed: int = 0


DEFAULTS = Defaults()

FASTER = "faster"
SLOWER = "slower"
NO_CHANGE = "no measurable change"
NOT_APPLICABLE = "not applicable"
FAILED = "failed"
VERDICTS = (FASTER, SLOWER, NO_CHANGE, NOT_APPLICABLE, FAILED)


@dataclass(frozen=True)
class Comparison:
    metric: str
    ratio: float  # variant / baseline, geometric mean over pairs
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # which paired test produced p_value
    n_pairs: int
    n_unpaired: int  # pairs present on one side only, dropped
    threshold: float  # relative change below which nothing is claimed
    verdict: str


def _pair_medians(df: pd.DataFrame, metric: str, pair_on: list[str]) -> pd.Series:
    # Warm-up and cold-start rows and failed trials are not samples of steady state.
    if "phase" in df.columns:
        df = df[df["phase"] == "trial"]
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.dropna(subset=[metric])
    return df.groupby(pair_on)[metric].median()


def _bootstrap_ci(log_ratios: np.ndarray, d: Defaults) -> tuple[float, float]:
    rng = np.random.default_rng(d.seed)
    n = len(log_ratios)
    # Resampling whole pairs keeps each pair's baseline and variant together.
    means = log_ratios[rng.integers(0, n, size=(d.n_resamples, n))].mean(axis=1)
    tail = (1 - d.confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(np.exp(low)), float(np.exp(high))


def _sign_flip_p(log_ratios: np.ndarray) -> float:
    """Exact two-sided permutation test: under no change each pair's sign is a coin flip."""
    observed = abs(log_ratios.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(log_ratios))))
    flipped = np.abs((signs * log_ratios).mean(axis=1))
    # The tolerance counts sign patterns that tie with the observed one despite rounding.
    return float(np.mean(flipped >= observed - 1e-12))


def _paired_p(log_ratios: np.ndarray, d: Defaults) -> tuple[float, str]:
    if not np.any(log_ratios):
        return 1.0, "none: identical samples"
    if len(log_ratios) >= d.min_pairs_wilcoxon:
        return float(scipy_stats.wilcoxon(log_ratios).pvalue), "wilcoxon signed-rank"
    return _sign_flip_p(log_ratios), "exact sign-flip permutation"


def compare(
    baseline: pd.DataFrame,
    variant: pd.DataFrame,
    metric: str = "rtf",
    pair_on=("prompt_id", "seed"),
    noise_floor: float | None = None,
    defaults: Defaults = DEFAULTS,
) -> Comparison:
    """Compare a lower-is-better metric; `noise_floor` comes from an A/A comparison."""
    pair_on = list(pair_on)
    base = _pair_medians(baseline, metric, pair_on)
    var = _pair_medians(variant, metric, pair_on)
    common = base.index.intersection(var.index)
    if len(common) == 0:
        raise ValueError(
            f"no (prompt, seed) pair has an ok {metric!r} trial on both sides "
            f"(pairing on {pair_on}: baseline has {len(base)} pairs, variant {len(var)})"
        )
    n_unpaired = len(base.index.symmetric_difference(var.index))
    log_ratios = np.log(var.loc[common].to_numpy(float) / base.loc[common].to_numpy(float))

    ratio = float(np.exp(log_ratios.mean()))
    ci_low, ci_high = _bootstrap_ci(log_ratios, defaults)
    p_value, test = _paired_p(log_ratios, defaults)
    threshold = max(defaults.min_threshold, noise_floor or 0.0)

    significant = p_value < defaults.alpha
    if significant and ci_high < 1 and ratio < 1 - threshold:
        verdict = FASTER
    elif significant and ci_low > 1 and ratio > 1 + threshold:
        verdict = SLOWER
    else:
        verdict = NO_CHANGE
    return Comparison(
        metric=metric,
        ratio=ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        test=test,
        n_pairs=len(common),
        n_unpaired=n_unpaired,
        threshold=threshold,
        verdict=verdict,
    )


def noise_floor(
    aa_first: pd.DataFrame,
    aa_second: pd.DataFrame,
    metric: str = "rtf",
    pair_on=("prompt_id", "seed"),
    defaults: Defaults = DEFAULTS,
) -> float:
    """How far from 1 the ratio of two identical runs can wander on this machine."""
    aa = compare(aa_first, aa_second, metric, pair_on, defaults=defaults)
    return max(1 - aa.ci_low, aa.ci_high - 1)
