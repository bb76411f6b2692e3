"""Verdicts from replicates: the rule holds at a suite's small n under the noise a quiet machine
shows, with per-process offsets, in both designs; fixtures for every number it prints."""
import math

import numpy as np
import pandas as pd
import pytest

from ttsopt.core import stats
from ttsopt.core.vocab import Verdict
from ttsopt.experiment import profiles

QUICK = profiles.get("quick")
PROMPTS = QUICK.prompt_ids
# Trial-to-trial noise of one synthesis on a quiet machine, and the spread of one process's
# offset against another's (uniform within +-3%): the levels the rule must hold under.
TRIAL_NOISE = 0.015
PROCESS_OFFSET = 0.03
SUITES = 1000


def in_process(effect: float, rng, trials: int = QUICK.trials) -> pd.DataFrame:
    """One run's records in one process: a process offset both sides share, a slow drift over the
    run, lognormal trial noise; pairs interleaved A B, B A."""
    offset = rng.uniform(-PROCESS_OFFSET, PROCESS_OFFSET)
    rows, pair, clock = [], 0, 0
    for trial in range(trials):
        for i, prompt in enumerate(PROMPTS):
            for seed in QUICK.seeds:
                order = ("baseline", "variant") if pair % 2 == 0 else ("variant", "baseline")
                for side in order:
                    drift = 0.0005 * clock
                    clock += 1
                    rtf = (0.5 + 0.2 * i) * math.exp(offset + drift + rng.normal(0, TRIAL_NOISE))
                    rtf *= effect if side == "variant" else 1.0
                    rows.append(dict(phase="trial", status="ok", side=side, pair=pair, prompt_id=prompt, seed=seed,
                                     trial=trial, rtf=rtf))
                pair += 1
    return pd.DataFrame(rows)


def cross_process(effect: float, rng, rounds: int = QUICK.rounds) -> pd.DataFrame:
    """Rounds of a baseline and a variant process, each with its own offset, a cold call and trials."""
    rows = []
    for r in range(rounds):
        for side in ("baseline", "variant"):
            offset = rng.uniform(-PROCESS_OFFSET, PROCESS_OFFSET)
            factor = effect if side == "variant" else 1.0
            process = 2 * r + (side == "variant")
            rows.append(dict(phase="cold", status="ok", side=side, round=r, process=process,
                             wall_s=3.0 * factor * math.exp(offset + rng.normal(0, TRIAL_NOISE))))
            for seed in QUICK.seeds:
                rows.append(dict(phase="trial", status="ok", side=side, round=r, process=process, prompt_id=PROMPTS[0],
                                 seed=seed, rtf=0.7 * factor * math.exp(offset + rng.normal(0, TRIAL_NOISE))))
    return pd.DataFrame(rows)


def verdicts(make, effect: float, seed: int, **compare) -> dict:
    rng = np.random.default_rng(seed)
    counts: dict = {}
    for _ in range(SUITES):
        v = stats.compare(make(effect, rng), **compare).verdict
        counts[v] = counts.get(v, 0) + 1
    return {k: n / SUITES for k, n in counts.items()}


def test_quick_profile_has_the_pairs_and_rounds_the_simulations_assume():
    assert QUICK.pairs == 6 and QUICK.rounds == 3


def test_a_noop_in_one_process_is_no_measurable_change():
    share = verdicts(in_process, 1.0, 1, column="rtf")
    assert share.get(Verdict.NO_CHANGE, 0) >= 0.95, share
    assert share.get(Verdict.FASTER, 0) + share.get(Verdict.SLOWER, 0) == 0, share


def test_a_ten_percent_slowdown_in_one_process_is_slower():
    share = verdicts(in_process, 1.10, 2, column="rtf")
    assert share.get(Verdict.SLOWER, 0) >= 0.95, share


def test_halving_at_the_quick_profiles_n_is_faster():
    assert verdicts(in_process, 0.5, 3, column="rtf") == {Verdict.FASTER: 1.0}
    assert verdicts(cross_process, 0.5, 4, column="wall_s", phase="cold", design="cross-process") == \
        {Verdict.FASTER: 1.0}


def test_a_noop_across_processes_is_never_given_a_direction():
    """Process offsets do not cancel across processes: with three rounds a no-op is mostly
    'inconclusive', and never 'faster' or 'slower' beyond the interval's own 5% error."""
    for metric in (dict(column="rtf"), dict(column="wall_s", phase="cold")):
        share = verdicts(cross_process, 1.0, 5, design="cross-process", **metric)
        directional = sum(share.get(v, 0) for v in (Verdict.FASTER, Verdict.SLOWER))
        assert directional <= 0.05, (metric, share)


def test_the_interval_covers_the_true_ratio_at_small_n():
    """The t interval on log ratios keeps its 95% at six pairs (a percentile bootstrap gave ~86%)."""
    rng = np.random.default_rng(6)
    covered = 0
    for _ in range(SUITES):
        c = stats.compare(in_process(0.8, rng), "rtf")
        covered += c.ci_low <= 0.8 <= c.ci_high
    assert covered / SUITES >= 0.93


def test_ratio_is_variant_over_baseline_and_replicates_are_counted():
    df = in_process(2.0, np.random.default_rng(7))
    c = stats.compare(df, "rtf")
    assert c.ratio == pytest.approx(2.0, rel=0.05) and c.ratio > 1
    assert (c.n, c.unit) == (QUICK.pairs, "pairs")
    assert c.verdict == Verdict.SLOWER


def test_same_data_gives_same_interval():
    df = in_process(1.05, np.random.default_rng(8))
    assert stats.compare(df, "rtf") == stats.compare(df, "rtf")


def test_decide_reads_the_whole_interval_against_the_band():
    assert stats.decide(0.80, 0.90, 0.05) == Verdict.FASTER
    assert stats.decide(1.06, 1.20, 0.05) == Verdict.SLOWER
    assert stats.decide(0.97, 1.04, 0.05) == Verdict.NO_CHANGE
    assert stats.decide(0.90, 1.01, 0.05) == Verdict.INCONCLUSIVE  # reaches past the band, and into it
    assert stats.decide(0.80, 0.90, 0.05, kind="memory") == Verdict.SMALLER
    assert stats.decide(1.10, 1.20, 0.05, kind="memory") == Verdict.LARGER


def test_the_aa_offset_widens_the_band():
    df = in_process(1.15, np.random.default_rng(9))
    assert stats.compare(df, "rtf").verdict == Verdict.SLOWER
    held = stats.compare(df, "rtf", aa_offset=0.2)
    assert held.band == 0.2 and held.verdict != Verdict.SLOWER


def test_one_replicate_has_no_interval_and_is_inconclusive():
    df = in_process(0.5, np.random.default_rng(10))
    one = stats.compare(df[df["pair"] == 0], "rtf")
    assert one.n == 1 and math.isnan(one.ci_low) and one.verdict == Verdict.INCONCLUSIVE


def test_identical_sides_are_no_change_with_a_zero_width_interval():
    df = in_process(1.0, np.random.default_rng(11))
    same = df.copy()
    for _, rows in same.groupby("pair"):
        same.loc[rows.index, "rtf"] = rows["rtf"].iloc[0]
    c = stats.compare(same, "rtf")
    assert (c.ratio, c.ci_low, c.ci_high, c.verdict) == (1.0, 1.0, 1.0, Verdict.NO_CHANGE)


def test_failed_and_warmup_records_are_not_replicates():
    df = in_process(1.0, np.random.default_rng(12))
    extra = df.iloc[:2].assign(phase="warmup", rtf=99.0)
    failed = df.iloc[2:4].assign(status="failed")
    c = stats.compare(pd.concat([extra, failed, df.iloc[4:]]), "rtf")
    assert c.n == QUICK.pairs - 2  # the first two pairs each lost a side


def test_no_replicate_is_an_error():
    df = in_process(1.0, np.random.default_rng(13))
    with pytest.raises(ValueError, match="no replicate"):
        stats.compare(df[df["side"] == "baseline"], "rtf")


def test_a_column_the_records_never_measured_is_no_replicate_not_a_crash():
    df = in_process(1.0, np.random.default_rng(13))  # records older than a metric have no column for it
    with pytest.raises(ValueError, match="no replicate has an ok 'stage_vocoder' value"):
        stats.compare(df, "stage_vocoder")


def test_one_measurement_per_side_is_compared_as_a_point():
    df = pd.DataFrame([dict(phase="load", status="ok", side="baseline", mem=3000.0),
                       dict(phase="load", status="ok", side="variant", mem=1500.0)])
    c = stats.compare(df, "mem", kind="memory", phase="load")
    assert (c.ratio, c.ci_low, c.ci_high, c.unit) == (0.5, 0.5, 0.5, "measurements")
    assert c.verdict == Verdict.SMALLER


def test_memory_too_small_for_a_ratio_is_inconclusive():
    df = pd.DataFrame([dict(phase="trial", status="ok", side=s, pair=p, mem=v)
                       for p in range(4) for s, v in (("baseline", 1.0), ("variant", 2.0))])
    assert stats.compare(df, "mem", kind="memory").verdict == Verdict.INCONCLUSIVE


def test_unstable_aa_and_drift():
    steady = stats.compare(in_process(1.0, np.random.default_rng(14)), "rtf")
    assert not stats.unstable(steady)
    assert stats.unstable(stats.compare(in_process(1.2, np.random.default_rng(15)), "rtf"))
    rho, p = stats.drift([0, 1, 2, 3, 4, 5], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    assert rho == pytest.approx(1.0) and p < 0.05
    assert math.isnan(stats.drift([0, 1], [1.0, 2.0])[0])


def test_a_zero_value_is_not_a_replicate_and_gives_no_infinite_ratio():
    rows = [dict(phase="trial", status="ok", side=s, pair=p, mem=v)
            for p in range(6) for s, v in (("baseline", 400.0), ("variant", 0.0 if p < 2 else 200.0))]
    c = stats.compare(pd.DataFrame(rows), "mem", kind="memory")
    assert c.n == 4 and math.isfinite(c.ratio) and c.ratio == pytest.approx(0.5)


def test_a_memory_ratio_reads_in_memorys_words_and_a_time_in_speeds():
    logs = np.log([0.55, 0.57, 0.58])  # the variant holds a little over half
    memory = stats.from_logs(logs, "rounds", 3000.0, 1700.0, metric="rss", column="mem_rss_mb", kind="memory")
    time = stats.from_logs(logs, "rounds", 10.0, 5.7, metric="wall", column="wall_s")
    assert memory.reading(False) == str(memory.verdict) == str(Verdict.SMALLER)
    assert time.reading(False) == str(Verdict.FASTER)
