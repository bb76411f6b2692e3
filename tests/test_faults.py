"""Faults and interruptions lose nothing: each failure is recorded with its reason, every
record written before it stays, and a resumed run completes only what is missing."""
import pytest

from ttsopt import results, runner, variants


@pytest.fixture()
def fault_variants(monkeypatch):
    monkeypatch.setenv(variants.PLUGINS_ENV, "fault_variants")
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(__import__("pathlib").Path(__file__).parent))


FAULTS = {
    "fault-raises": "RuntimeError: planted failure in a variant",
    "fault-oom": "out of memory: CUDA out of memory",
    "fault-dies": "process exited with code 3",
}


def test_each_fault_is_recorded_and_every_other_result_survives(tmp_path, fault_variants):
    runner.execute(runner.RunConfig(out_dir=str(tmp_path), role="baseline", profile="smoke"))
    for name, reason in FAULTS.items():
        summary = runner.run_isolated(runner.RunConfig(out_dir=str(tmp_path), variant=name, profile="smoke"))
        assert summary.status == "failed" and reason in summary.error
    df = results.load(tmp_path)
    for name, reason in FAULTS.items():
        mine = df[df.run_id == name]
        assert reason in mine[mine.status == "failed"].error.iloc[0]
        # the cold call, the warm-up and a first trial were written before the fault and stay
        assert {"cold", "warmup", "trial"} <= set(mine[mine.status == "ok"].phase)
    # and the baseline's results are untouched
    assert (df[df.run_id == "baseline-baseline"].status == "ok").all()


def test_resume_completes_only_what_is_missing(tmp_path, fault_variants):
    cfg = runner.RunConfig(out_dir=str(tmp_path), variant="fault-dies", profile="smoke")
    runner.run_isolated(cfg)
    before = results.load(tmp_path)
    done = set(before[(before.phase == "trial") & (before.status == "ok")].prompt_id + "/" +
               before[(before.phase == "trial") & (before.status == "ok")].seed.astype(int).astype(str))
    assert done  # something finished before the kill
    # resumed with the fault gone: the planted variant now behaves like the baseline
    resumed = runner.RunConfig(out_dir=str(tmp_path), variant="fault-dies", profile="smoke", resume=True)
    import fault_variants as fv
    fv.KillsKernel.after = 10_000
    try:
        runner.execute(resumed)
    finally:
        fv.KillsKernel.after = 3
    after = results.load(tmp_path)
    trials = after[(after.phase == "trial") & (after.status == "ok")]
    keys = list(trials.prompt_id + "/" + trials.seed.astype(int).astype(str))
    assert len(keys) == len(set(keys)) == 6  # every (prompt, seed) exactly once: nothing redone
