"""Faults and interruptions lose nothing: each failure is recorded with its reason, every
record written before it stays, and a resumed run completes only what is missing."""
from pathlib import Path

import pytest

from ttsopt import variants
from ttsopt.core import records
from ttsopt.experiment import runner, suite

HERE = Path(__file__).parent


@pytest.fixture()
def fault_variants(monkeypatch):
    monkeypatch.setenv(variants.PLUGINS_ENV, "fault_variants")
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", str(HERE))


FAULTS = {
    "fault-raises": "RuntimeError: planted failure in a variant",
    "fault-oom": "out of memory: CUDA out of memory",
    "fault-dies": "the kernel died",
}


def test_each_fault_is_recorded_and_every_other_result_survives(tmp_path, fault_variants):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), role="aa", design="in-process"))
    for name, reason in FAULTS.items():
        cfg = runner.RunConfig(out_dir=str(tmp_path), variant=name)
        status, why = suite.execute_in_kernel(cfg, profiling=False, timeout_s=300)
        assert status == "failed" and reason in why, (name, why)
    df = records.load(tmp_path)
    for name, reason in FAULTS.items():
        mine = df[df.run_id == name]
        assert reason in mine[mine.status == "failed"].error.iloc[0]
        # the loads, the warm-ups and the first pairs were written before the fault and stay
        assert {"load", "warmup", "trial"} <= set(mine[mine.status == "ok"].phase)
    # and the reference run's results are untouched
    assert (df[df.run_id == "aa-in-process"].status == "ok").all()


def test_resume_completes_only_what_is_missing(tmp_path, fault_variants, monkeypatch):
    cfg = runner.RunConfig(out_dir=str(tmp_path), variant="fault-dies")
    suite.execute_in_kernel(cfg, profiling=False, timeout_s=300)
    before = records.load(tmp_path)
    done = before[(before.phase == "trial") & (before.status == "ok")]
    assert 0 < done["pair"].nunique() < 6  # some pairs finished before the kill
    monkeypatch.setenv("TTSOPT_TEST_NO_FAULT", "1")  # resumed with the fault gone
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), variant="fault-dies", resume=True))
    after = records.load(tmp_path)
    trials = after[(after.phase == "trial") & (after.status == "ok")]
    keys = list(trials.side + "/" + trials.prompt_id + "/" + trials.seed.astype(int).astype(str))
    assert len(keys) == len(set(keys)) == 12  # every (side, prompt, seed) exactly once: nothing redone
