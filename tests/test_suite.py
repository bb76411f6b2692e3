"""The batch suite end to end on the tiny model: every registered variant in its own kernel, the
index that links them, resume, every way a run can fail, and papermill from a shell."""
import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ttsopt import variants
from ttsopt.core import records
from ttsopt.core.errors import UserError
from ttsopt.experiment import runner, suite
from ttsopt.report import html

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    """The README's suite, smoke-sized: baseline, A/A and every registered variant (a few minutes)."""
    out = tmp_path_factory.mktemp("suite") / "report"
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "run", "--source", "tiny", "--variants", "all",
                           "--profile", "smoke", "--out", str(out), "--no-profiling"],
                          capture_output=True, text=True, timeout=3600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_suite_runs_every_registered_variant_and_links_each_run(suite_dir):
    expected = ["aa-in-process", "aa-cross-process", *variants.registry()]
    df = records.load(suite_dir)
    assert sorted(df["run_id"].unique()) == sorted(expected)
    statuses = df.groupby("run_id")["status"].agg(set)
    assert statuses["aa-in-process"] == {"ok"} and statuses["aa-cross-process"] == {"ok"}
    plan = json.loads((suite_dir / "suite.json").read_text())
    assert plan["order"][0] == "aa-in-process" and sorted(plan["order"]) == sorted(expected)
    assert plan["order"][1:] != sorted(plan["order"][1:]), "the order after the reference run is shuffled"
    positions = df.groupby("run_id")["suite_position"].first()
    assert positions["aa-in-process"] == 0 and sorted(positions) == list(range(len(expected)))
    index = (suite_dir / "index.html").read_text()
    for run_id in expected:
        assert f'href="html/{run_id}.html"' in index, run_id
        assert (suite_dir / "html" / f"{run_id}.html").is_file()
    refs = re.findall(r'(?:src|href)="([^"]+)"', index)
    assert refs
    for ref in refs:
        if ref.startswith("#"):  # a link within the page
            assert f'id="{ref[1:]}"' in index, f"index links to no element {ref}"
            continue
        assert (suite_dir / urllib.parse.unquote(ref)).is_file(), f"index refers to missing {ref}"
    rows = {r["run_id"]: r for r in html.json_lines(suite_dir)}
    assert rows["channels-last"]["verdict"] == "not exercised here"  # a fixed voice: no converted call
    assert rows["token-budget"]["verdict"] == rows["alignment-analyzer"]["verdict"] == "needs real weights"
    assert rows["warmup"]["metric"] == "cold_start" and rows["warmup"]["design"] == "cross-process"
    assert rows["fast-t3"]["engaged"] and rows["fast-t3"]["metric"] == "t3_decode"
    # Not applicable here means no kernel was started for it, and the page says why.
    for run_id in df[df["status"] == "not applicable"]["run_id"].unique():
        assert not (suite_dir / "notebooks" / f"{run_id}.ipynb").exists()
        reason = df[(df.run_id == run_id) & (df.status == "not applicable")]["error"].iloc[0]
        assert reason and reason.split(":")[0] in index


@pytest.mark.slow
def test_resume_skips_finished_runs(suite_dir):
    runs = suite.plan("tiny", list(variants.registry()), "smoke", suite_dir)
    outcomes = suite.run_suite(runs, resume=True, profiling=False, progress=False)
    finished = {r.run_id for r in runs if suite.finished_ok(r)}
    assert {"aa-in-process", "aa-cross-process", "fast-t3"} <= finished
    assert {o.run_id for o in outcomes if o.status == "skipped"} == finished


@pytest.mark.slow
def test_summary_notebook_runs_over_a_suite(suite_dir, tmp_path):
    proc = subprocess.run([str(BIN / "papermill"), str(REPO / "notebooks" / "summary.ipynb"), str(tmp_path / "s.ipynb"),
                           "-p", "out_dir", str(suite_dir)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _notebook(path: Path, body: str) -> Path:
    params = new_code_cell("variant = role = design = source = device = profile = out_dir = run_id = prompts_csv = ''\n"
                           "suite_position = process_timeout_s = 0\n"
                           "profiling = False")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("body, reason", [
    ("raise RuntimeError('broken <b>variant</b>')", "RuntimeError: broken <b>variant</b>"),
    ("import os; os._exit(9)", "the kernel died"),
    ("import time; time.sleep(60)", "timed out"),
    ("pass", "the notebook finished without writing any record"),
])
def test_every_failure_is_recorded_and_the_suite_goes_on(tmp_path, body, reason):
    notebook = _notebook(tmp_path / "bad.ipynb", body)
    runs = suite.plan("tiny", ["no-grad", "channels-last"], "smoke", tmp_path / "out")[1:]
    outcomes = suite.run_suite(runs, notebook=notebook, time_limit_s=15, profiling=False, progress=False)
    assert [o.status for o in outcomes] == ["failed", "failed"], "the second run went ahead after the first failed"
    assert reason in outcomes[0].reason
    df = records.load(tmp_path / "out")
    assert (df["status"] == "failed").all() and df["error"].str.contains(re.escape(reason)).all()


def test_not_applicable_is_recorded_without_a_kernel(tmp_path, monkeypatch):
    monkeypatch.setattr(suite.variants, "unavailable", lambda spec, **_: f"{spec}: requires CUDA (test)")
    runs = suite.plan("tiny", ["no-grad"], "smoke", tmp_path)[1:]
    [outcome] = suite.run_suite(runs, profiling=False, progress=False)
    assert outcome.status == "not applicable" and outcome.seconds < 2
    assert not (tmp_path / "notebooks").exists()
    record = records.load(tmp_path).iloc[0]
    assert (record["status"], record["error"]) == ("not applicable", "no-grad: requires CUDA (test)")


def test_a_failed_reference_run_stops_the_suite_at_once(tmp_path):
    notebook = _notebook(tmp_path / "bad.ipynb", "raise RuntimeError('no baseline today')")
    runs = suite.plan("tiny", ["no-grad"], "smoke", tmp_path / "out")
    stopped = "reference run \\(aa-in-process\\) did not complete.*no baseline today"
    with pytest.raises(suite.SuiteStopped, match=stopped):
        suite.run_suite(runs, notebook=notebook, time_limit_s=15, profiling=False, progress=False)
    assert not (tmp_path / "out" / "no-grad.jsonl").exists()


def test_plan_puts_the_reference_first_and_adds_the_design_aa_a_variant_needs(tmp_path):
    names = ["warmup", "no-grad", "channels-last", "stream", "cfm-steps-4"]
    runs = suite.plan("tiny", names, "smoke", tmp_path, order_seed=3)
    assert runs[0].run_id == "aa-in-process" and [r.suite_position for r in runs] == list(range(len(runs)))
    assert "aa-cross-process" in {r.run_id for r in runs}
    again = suite.plan("tiny", names, "smoke", tmp_path, order_seed=3)
    other = suite.plan("tiny", names, "smoke", tmp_path, order_seed=4)
    assert [r.run_id for r in runs] == [r.run_id for r in again] != [r.run_id for r in other]
    assert "aa-cross-process" not in {r.run_id for r in suite.plan("tiny", ["no-grad"], "smoke", tmp_path)}


def test_time_limits_follow_the_reference_runs_measured_cost(tmp_path):
    reference, variant = suite.plan("tiny", ["no-grad"], "smoke", tmp_path)
    assert suite.time_limits(reference, variant)[0] == suite.profiles.get("smoke").time_limit_s  # nothing measured yet
    runner.execute(reference)
    limit, per_process = suite.time_limits(reference, variant)
    df = records.load(tmp_path)
    mean = df[(df.side == "baseline") & df.phase.isin(["trial", "warmup"])].wall_s.mean()
    assert suite.TIME_LIMIT_FACTOR * 12 * mean < limit < suite.profiles.get("smoke").time_limit_s  # twelve trials


def test_unknown_variant_stops_before_any_run(tmp_path):
    with pytest.raises(UserError, match="unknown variant"):
        suite.resolve_names("no-such-variant")
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "run", "--variants", "no-such-variant", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown variant" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_papermill_from_a_shell(tmp_path):
    """What the README tells a user to type, plus an output folder and the profiler on."""
    runnable = [n for n in variants.registry() if not variants.unavailable(n)]
    name = runnable[0] if runnable else variants.BASELINE
    proc = subprocess.run([str(BIN / "papermill"), "notebooks/experiment.ipynb", str(tmp_path / "out.ipynb"),
                           "-p", "variant", name, "-p", "source", "tiny", "-p", "out_dir", str(tmp_path / "runs"),
                           "-p", "profiling", "True"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = records.load(tmp_path / "runs")
    assert set(df["status"]) == {"ok"} and (df["phase"] == "trial").sum() == 12  # six pairs, two sides
    traces = list((tmp_path / "runs" / "traces").glob(f"{runner.run_id_for(name, 'variant')}.json*"))
    assert traces, "the profiling pass saves a Chrome trace"
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "audio/wav" in outputs or "<audio" in outputs, "audio players for the run"
    assert "t3_decode" in outputs, "the profiler's stage table"


def test_baseline_deep_dive_notebook(tmp_path):
    proc = subprocess.run([str(BIN / "papermill"), "notebooks/baseline.ipynb", str(tmp_path / "b.ipynb"),
                           "-p", "source", "tiny", "-p", "out_dir", str(tmp_path), "-p", "max_tokens", "12"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "traces").glob("baseline-deep-dive.json*"))
    outputs = json.dumps([c.get("outputs", []) for c in nbformat.read(tmp_path / "b.ipynb", as_version=4).cells])
    assert "aten::" in outputs and "image/png" in outputs, "operator table and the cost-by-length figure"
