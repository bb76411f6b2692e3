"""The interleaved rounds the step scripts compare paths with."""
import pytest

from ttsopt.measure import rounds


def test_every_round_measures_every_subject_in_the_same_order():
    order = []
    subjects = {name: (lambda n=name: order.append(n) or float(len(order))) for name in ("a", "b", "c")}
    readings = rounds.interleaved(subjects, 3, say=lambda line: None)
    assert order == ["a", "b", "c"] * 3
    assert readings == {"a": [1.0, 4.0, 7.0], "b": [2.0, 5.0, 8.0], "c": [3.0, 6.0, 9.0]}


def test_each_reading_is_said_with_its_round_and_unit():
    said = []
    rounds.interleaved({"x": lambda: 1.5}, 2, say=said.append, unit="ms/step")
    assert said == ["round 0: x 1.50 ms/step", "round 1: x 1.50 ms/step"]


def test_summary_leaves_the_warm_up_round_out():
    assert rounds.summary([100.0, 3.0, 1.0, 2.0]) == "2.00 (1.00-3.00)"
    assert rounds.summary([5.0], digits=1) == "5.0 (5.0-5.0)"
    assert rounds.kept_rounds(4) == "median over rounds 1-3 (round 0 warms up)"
    assert rounds.kept_rounds(2) == "round 1 (round 0 warms up)"
    assert rounds.kept_rounds(1) == "one round"


def test_no_rounds_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        rounds.interleaved({"x": lambda: 1.0}, 0)


def test_paired_gain_reads_each_rounds_ratio_and_leaves_the_warm_up_out():
    reference = [50.0, 10.0, 11.0, 9.0, 10.0]
    faster = [1.0, 5.0, 5.5, 4.5, 5.0]  # half the reference's time in every steady round
    assert rounds.paired(faster, reference) == "x2.000 (2.000-2.000, n = 4) faster"


def test_paired_gain_that_straddles_the_band_is_inconclusive_with_its_n():
    reference = [1.0, 10.0, 10.0, 10.0]
    mixed = [1.0, 9.0, 11.0, 10.0]
    text = rounds.paired(mixed, reference)
    assert text.endswith("inconclusive (n = 3)")
    assert text.startswith("x1.0")


def test_paired_gain_of_a_slower_subject_is_below_one_and_says_slower():
    reference = [1.0, 10.0, 10.0, 10.0]
    slower = [1.0, 20.0, 21.0, 19.0]
    text = rounds.paired(slower, reference)
    assert text.startswith("x0.50") and text.endswith("slower")
