import numpy as np
import pandas as pd
import pytest

from ttsopt import stats

PROMPTS = ("short", "medium", "long", "numbers")
SEEDS = (0, 1, 2)
TRIALS = 5


def recorded(factor: float, seed: int, noise: float = 0.04) -> pd.DataFrame:
    """Rows shaped like the results store: each prompt has its own typical RTF, every
    trial gets lognormal noise, and warm-up rows are present but must be ignored."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, prompt in enumerate(PROMPTS):
        for s in SEEDS:
            level = 0.5 + 0.15 * i
            key = dict(prompt_id=prompt, seed=s, status="ok")
            rows.append(dict(key, trial=0, phase="warmup", rtf=9.0))
            for t in range(TRIALS):
                rtf = level * factor * rng.lognormal(0.0, noise)
                rows.append(dict(key, trial=t, phase="trial", rtf=rtf))
    return pd.DataFrame(rows)


def test_aa_is_no_measurable_change():
    c = stats.compare(recorded(1.0, seed=1), recorded(1.0, seed=2))
    assert c.verdict == stats.NO_CHANGE
    assert c.ci_low <= 1 <= c.ci_high
    assert c.n_pairs == len(PROMPTS) * len(SEEDS)
    assert c.n_unpaired == 0
    assert c.test == "wilcoxon signed-rank"


def test_planted_slowdown_is_slower_and_ci_covers_it():
    c = stats.compare(recorded(1.0, seed=3), recorded(1.15, seed=4))
    assert c.verdict == stats.SLOWER
    assert c.ci_low <= 1.15 <= c.ci_high
    assert c.p_value < stats.DEFAULTS.alpha


def test_planted_speedup_is_faster_and_ci_covers_it():
    c = stats.compare(recorded(1.0, seed=5), recorded(0.7, seed=6))
    assert c.verdict == stats.FASTER
    assert c.ci_low <= 0.7 <= c.ci_high


def test_ratio_is_variant_over_baseline():
    base = recorded(1.0, seed=7, noise=0.0)
    c = stats.compare(base, recorded(2.0, seed=8, noise=0.0))
    assert c.ratio == pytest.approx(2.0)
    assert c.ratio > 1


def test_same_data_gives_same_interval():
    a, b = recorded(1.0, seed=9), recorded(1.05, seed=10)
    assert stats.compare(a, b) == stats.compare(a, b)


def test_change_inside_the_noise_floor_is_no_measurable_change():
    a, b = recorded(1.0, seed=11, noise=0.01), recorded(1.05, seed=12, noise=0.01)
    assert stats.compare(a, b).verdict == stats.SLOWER
    held = stats.compare(a, b, noise_floor=0.08)
    assert held.threshold == 0.08
    assert held.verdict == stats.NO_CHANGE


def test_threshold_never_below_the_minimum():
    a, b = recorded(1.0, seed=13), recorded(1.0, seed=14)
    assert stats.compare(a, b, noise_floor=0.001).threshold == stats.DEFAULTS.min_threshold


def test_noise_floor_is_ci_half_width_around_one():
    a, b = recorded(1.0, seed=15), recorded(1.0, seed=16)
    aa = stats.compare(a, b)
    floor = stats.noise_floor(a, b)
    assert floor == max(1 - aa.ci_low, aa.ci_high - 1)
    assert 0 < floor < 0.1


def test_unpaired_pairs_are_dropped_and_counted():
    base = recorded(1.0, seed=17)
    variant = recorded(1.0, seed=18)
    variant = variant[variant.prompt_id != "long"]
    c = stats.compare(base, variant)
    assert c.n_pairs == 9
    assert c.n_unpaired == 3


def test_failed_trials_do_not_count():
    base = recorded(1.0, seed=19)
    variant = recorded(1.0, seed=20)
    variant.loc[variant.prompt_id == "long", "status"] = "failed"
    assert stats.compare(base, variant).n_unpaired == 3


def test_no_pairs_is_an_error():
    base = recorded(1.0, seed=21)
    variant = base.assign(prompt_id="other")
    with pytest.raises(ValueError, match="no \\(prompt, seed\\) pair"):
        stats.compare(base, variant)


def test_few_pairs_use_an_exact_permutation_test():
    base = pd.DataFrame(dict(prompt_id=["a", "b", "c"], seed=0, rtf=[1.0, 1.0, 1.0]))
    variant = base.assign(rtf=[1.5, 1.6, 1.7])
    c = stats.compare(base, variant)
    assert c.test == "exact sign-flip permutation"
    # All three pairs slower: 2 of the 8 sign patterns are as extreme.
    assert c.p_value == pytest.approx(2 / 8)
    assert c.verdict == stats.NO_CHANGE


def test_identical_samples_have_p_one():
    base = recorded(1.0, seed=22)
    c = stats.compare(base, base)
    assert c.p_value == 1.0
    assert c.ratio == pytest.approx(1.0)
    assert c.verdict == stats.NO_CHANGE


def test_verdicts_cover_variants_that_did_not_run():
    assert set(stats.VERDICTS) == {
        "faster", "slower", "no measurable change", "not applicable", "failed",
    }  # fmt: skip
