"""Interleaved rounds for comparing paths of one stage within one process (scripts/t3-steps.py,
scripts/flow-steps.py): every round measures every subject once, in the same order, so the
machine's drift falls on all of them alike, and the first round — compiling, TorchScript's
profiling runs, allocator warm-up — is reported apart from the rest. Since the rounds pair
every subject with the first, `paired` reads each subject's per-round ratio to it the way a
bench reads its pairs: a gain with its interval and the verdict that interval supports."""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping

import numpy as np

from ..core import stats
from ..core.vocab import Verdict


def interleaved(subjects: Mapping[str, Callable[[], float]], rounds: int,
                say: Callable[[str], None] = print, unit: str = "s") -> dict[str, list[float]]:
    """Each subject's readings over ROUNDS rounds; each reading is said as it comes."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    readings: dict[str, list[float]] = {name: [] for name in subjects}
    for r in range(rounds):
        for name, measure in subjects.items():
            readings[name].append(measure())
            say(f"round {r}: {name} {readings[name][-1]:.2f} {unit}")
    return readings


def steady(readings: list[float]) -> list[float]:
    """The readings after the first round (all of them when there was only one)."""
    return readings[1:] or readings


def summary(readings: list[float], digits: int = 2) -> str:
    """'median (min-max)' of the steady readings."""
    kept = steady(readings)
    return f"{statistics.median(kept):.{digits}f} ({min(kept):.{digits}f}-{max(kept):.{digits}f})"


def kept_rounds(rounds: int) -> str:
    """Which rounds a summary covers, for the header of a table."""
    if rounds == 1:
        return "one round"
    kept = "round 1" if rounds == 2 else f"median over rounds 1-{rounds - 1}"
    return f"{kept} (round 0 warms up)"


def paired(readings: list[float], reference: list[float]) -> str:
    """'xG (low-high, n = N) verdict': how many times faster READINGS are than REFERENCE, from
    their steady rounds' ratios (lower readings are better), as `core.stats` decides a verdict."""
    pairs = list(zip(steady(reference), steady(readings)))
    logs = np.array([math.log(ref / value) for ref, value in pairs])
    if len(logs) < stats.DEFAULTS.min_replicates:
        return f"x{math.exp(float(np.mean(logs))):.3f} (n = {len(logs)}, too few rounds for an interval)"
    gain, low, high, _ = stats.interval(logs)
    verdict = stats.decide(1 / high, 1 / low, stats.DEFAULTS.min_effect)
    shown = f"{verdict} (n = {len(logs)})" if verdict == Verdict.INCONCLUSIVE else str(verdict)
    return f"x{gain:.3f} ({low:.3f}-{high:.3f}, n = {len(logs)}) {shown}"
