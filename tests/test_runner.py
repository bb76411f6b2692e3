"""Both designs end to end on real tiny runs: replicates, A/A, planted effects, honesty about
variants that did nothing, and claims judged on their own metric."""
import os
import time
from pathlib import Path

import pytest

from ttsopt import variants
from ttsopt.core import records, stats
from ttsopt.core.claims import Claim
from ttsopt.core.vocab import Verdict
from ttsopt.experiment import profiles, runner
from ttsopt.report import table
from ttsopt.variants.base import Variant


class PlantedSlowdown(Variant):
    """Test-only: sleeps for FRACTION of the synthesis time spent so far, inside the timed region."""
    name = "planted-slowdown"
    claims = (Claim("rtf", "test only: doubles the time"),)
    fraction = 1.0

    def apply(self, pipeline):
        started = {}

        def timed_tokens(inner, text):
            started["t"] = time.perf_counter()
            return inner(text)

        def slow_vocode(inner, mels):
            wav = inner(mels)
            time.sleep(self.fraction * (time.perf_counter() - started["t"]))
            return wav

        pipeline.wrap("text_to_tokens", timed_tokens, by=self.name)
        pipeline.wrap("vocode", slow_vocode, by=self.name)
        return {"sleep_fraction": self.fraction}

    def evidence(self, pipeline, state):
        return state


class HalfLength(Variant):
    """Test-only: 'wins' by producing half the audio."""
    name = "half-length"
    claims = (Claim("rtf", "test only: shorter audio"),)

    def apply(self, pipeline):
        def halved(inner, text, n_tokens=None, **kw):
            return inner(text, n_tokens=max(1, n_tokens // 2), **kw)

        pipeline.wrap_synthesis(halved, by=self.name)
        return {"halved": True}

    def evidence(self, pipeline, state):
        return state


class DoesNothing(Variant):
    """Test-only: a plug-in that applies, changes nothing, and says so."""
    name = "does-nothing"
    claims = (Claim("rtf", "test only: nothing"),)

    def apply(self, pipeline):
        return None

    def evidence(self, pipeline, state):
        return {"active": False, "reason": "it changes nothing"}


@pytest.fixture()
def planted(monkeypatch):
    known = {**variants.registry(), "planted-slowdown": PlantedSlowdown(), "half-length": HalfLength(),
             "does-nothing": DoesNothing()}
    monkeypatch.setattr(variants, "registry", lambda aliases=False: known)


@pytest.fixture()
def longer(monkeypatch):
    """Three prompts x three seeds, long enough that halving the tokens clearly shows in T3."""
    p = profiles.Profile("longer", ("short-01", "medium-01", "numbers-01"), (0, 1, 2), trials=1, rounds=2,
                         cross_trials=1, warmup_tokens=4, tokens=24, time_limit_s=300, fidelity_prompts=0)
    monkeypatch.setitem(profiles.PROFILES, "longer", p)
    return p


def _row(out, run_id):
    rows, facts = table.table(records.load(out))
    return rows.set_index("run_id").loc[run_id], facts


def test_in_process_aa_is_one_process_and_reproduces_the_baseline(tmp_path):
    summary = runner.execute(runner.RunConfig(out_dir=str(tmp_path), role="aa", design="in-process"))
    assert summary.status == "ok"
    df = records.load(tmp_path)
    load = df[df.phase == "load"]
    assert set(load.side) == {"baseline", "variant"} and set(load.x_pid) == {os.getpid()}
    trials = df[df.phase == "trial"]
    ran = trials.sort_values("x_sequence").groupby("pair", sort=True).side.apply(list).tolist()
    assert ran[:2] == [["baseline", "variant"], ["variant", "baseline"]]  # A B, B A
    assert (trials[trials.side == "variant"].fid_token_match == 1.0).all()  # same seeds, same weights
    row, facts = _row(tmp_path, "aa-in-process")
    assert row.verdict == Verdict.NOISE_FLOOR and row.n == profiles.get("smoke").pairs
    assert "in-process" in facts["aa"]
    # the baseline's outputs are kept for runs measured in other processes
    assert list(Path(summary.audio[0]).parents[3].glob("reference/*.pt"))


def test_planted_slowdown_is_slower_and_its_interval_covers_it(tmp_path, planted, longer):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="planted-slowdown", profile="longer"))
    row, _ = _row(tmp_path, "planted-slowdown")
    assert row.verdict == Verdict.SLOWER and row.n == longer.pairs
    assert row.ci_low <= 2.0 <= row.ci_high * 1.1  # sleeping adds a hair of its own
    assert row.engaged


def test_shorter_audio_is_not_credited_as_faster(tmp_path, planted, longer):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="half-length", profile="longer"))
    df = records.load(tmp_path)
    t = df[df.phase == "trial"]
    base, half = t[t.side == "baseline"], t[t.side == "variant"]
    assert (half.audio_s.values < base.audio_s.max()).all()
    assert half.wall_s.median() < base.wall_s.median()   # less wall time...
    row, _ = _row(tmp_path, "half-length")
    assert row.verdict != Verdict.FASTER                # ...but per second of audio, no win
    assert (half.fid_token_match < 1).all()              # and fidelity shows the loss


@pytest.mark.parametrize("spec, why", [
    ("does-nothing", "it changes nothing"),
    ("stream", "fit in one chunk"),
    ("channels-last", "none of the"),
])
def test_applied_but_idle_is_not_exercised_here(tmp_path, planted, spec, why):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant=spec))
    row, _ = _row(tmp_path, spec)
    assert row.status == "ok" and not row.engaged and why in row.engaged_reason
    assert row.verdict == Verdict.NOT_EXERCISED
    assert "Not exercised here" in row.sentence


def test_a_length_claim_with_random_weights_needs_real_weights(tmp_path):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="token-budget"))
    row, _ = _row(tmp_path, "token-budget")
    assert row.metric == "time_to_stop" and row.verdict == Verdict.NEEDS_REAL_WEIGHTS
    assert row.rtf_verdict  # its RTF is still measured and shown


def test_cold_start_is_judged_across_processes(tmp_path):
    """warmup's claim is the first call after load: each round is a fresh baseline process and a
    fresh warmup process, and the cold call is what is compared."""
    summary = runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="warmup"))
    assert summary.status == "ok", summary.error
    df = records.load(tmp_path)
    cold = df[df.phase == "cold"]
    rounds = profiles.get("smoke").rounds
    assert len(cold) == 2 * rounds and set(cold.side) == {"baseline", "variant"}
    assert cold.x_pid.isna().all() and df[df.phase == "load"].x_pid.nunique() == 2 * rounds  # a process each
    order = df[df.phase == "load"].sort_values("process")[["round", "side"]].values.tolist()
    assert order[:4] == [[0, "baseline"], [0, "variant"], [1, "variant"], [1, "baseline"]]
    row, _ = _row(tmp_path, "warmup")
    assert row.design == "cross-process" and row.metric == "cold_start" and row.unit == "rounds"
    assert row.n == rounds and row.engaged


def test_a_process_that_dies_fails_the_run_and_keeps_what_was_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TTSOPT_VARIANT_MODULES", "fault_variants")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("TTSOPT_TEST_FAULT_AFTER", "2")  # its cold call and a first trial, then it dies
    cfg = runner.RunConfig(out_dir=str(tmp_path), variant="fault-dies", design="cross-process")
    summary = runner.execute(cfg)
    assert summary.status == "failed" and "exited with code 3" in summary.error
    df = records.load(tmp_path)
    assert (df.status == "failed").sum() == 1 and (df[df.phase == "trial"].status == "ok").all()


def test_not_applicable_variant_is_recorded_with_its_reason(tmp_path, planted, monkeypatch):
    monkeypatch.setattr(PlantedSlowdown, "requires", ("CUDA",))
    summary = runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="planted-slowdown"))
    assert summary.status == "not applicable"
    df = records.load(tmp_path)
    assert df.status.tolist() == ["not applicable"] and "requires CUDA" in df.error.iloc[0]


def test_no_secret_reaches_any_written_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-canary")
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), role="aa", design="in-process"))
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert written
    for p in written:
        assert b"secret-canary" not in p.read_bytes(), p


def test_verdicts_use_the_aa_band_of_their_own_design():
    assert stats.DEFAULTS.min_effect > 0
