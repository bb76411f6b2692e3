"""Interleaved rounds for comparing paths of one stage within one process (scripts/t3-steps.py,
scripts/flow-steps.py): every round measures every subject once, in the same order, so the
machine's drift falls on all of them alike, and the first round — compiling, TorchScript's
profiling runs, allocator warm-up — is reported apart from the rest."""
from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping


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
