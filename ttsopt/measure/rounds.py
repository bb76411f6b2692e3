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
    """'xG (low-high, n = N) verdict': how many times faster READINGS are than REFERENCE (lower is
    better), read from their steady rounds' ratios as `core.stats` reads a bench's pairs."""
    reference, readings = steady(reference), steady(readings)
    logs = np.log(np.array(readings) / np.array(reference))  # one round each, in the same rounds
    c = stats.from_logs(logs, "rounds", statistics.median(reference), statistics.median(readings),
                        metric="time", column="time")
    gain, low, high = c.gain(higher_is_better=False)
    spread = f"{low:.3f}-{high:.3f}, n = {c.n}" if math.isfinite(low) else f"n = {c.n}, too few rounds for an interval"
    return f"x{gain:.3f} ({spread}) {c.reading(higher_is_better=False)}"
