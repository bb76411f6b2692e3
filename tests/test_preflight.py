"""Pre-flight: common mistakes are refused in one line before torch is imported; a results folder
knows what it holds (another suite's records are refused before anything runs, or moved aside
with --force; a user's file is never overwritten; each sitting is recorded), and the report
flags runs measured after a pause."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ttsopt import cli
from ttsopt.core import records
from ttsopt.core.errors import UserError
from ttsopt.experiment import folder, profiles
from ttsopt.report import table

REPO = Path(__file__).resolve().parent.parent


def ident(profile="smoke", source="tiny", device="auto", prompts=profiles.PROMPTS_CSV):
    return folder.identity(profile, source, device, prompts)


def old_suite(out: Path, **kw) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    folder.write_manifest(out, ident(**kw), ["aa-in-process"], 0, resume=False)
    (out / "aa-in-process.jsonl").write_text('{"run_id": "aa-in-process"}\n')
    (out / "prompts.csv").write_bytes(Path(profiles.PROMPTS_CSV).read_bytes())
    return out


def test_a_folder_holding_another_suite_is_refused_before_anything_runs(tmp_path, capsys):
    out = old_suite(tmp_path / "out", profile="quick", source="synthetic")
    before = sorted(p.name for p in out.rglob("*"))
    code = cli.main(["run", "--profile", "smoke", "--out", str(out), "--variants", "no-grad"])
    line = capsys.readouterr().err.strip()
    assert code == 2 and "holds a suite of profile quick, source synthetic" in line and "--force" in line
    assert len(line.splitlines()) == 1 and sorted(p.name for p in out.rglob("*")) == before


def test_a_suite_of_another_model_is_refused_and_older_manifests_count_as_the_original(tmp_path):
    out = old_suite(tmp_path / "out", profile="smoke")  # a manifest written before there was a model to choose
    manifest = json.loads((out / folder.MANIFEST).read_text())
    manifest.pop("model", None)
    (out / folder.MANIFEST).write_text(json.dumps(manifest))
    folder.check(out, ident(profile="smoke"))  # the original model: the same suite
    with pytest.raises(UserError, match="holds a suite of profile smoke.*this one is model turbo, profile smoke"):
        folder.check(out, {**ident(profile="smoke"), "model": "turbo"})


def test_records_without_a_manifest_are_refused(tmp_path):
    (tmp_path / "x.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match="holds records but no suite.json"):
        folder.check(tmp_path, ident())


def test_force_moves_the_old_suite_aside_and_deletes_nothing(tmp_path):
    out = old_suite(tmp_path / "out", profile="quick")
    folder.check(out, ident(), force=True)
    [moved] = list((out / folder.SUPERSEDED).iterdir())
    assert {p.name for p in moved.iterdir()} == {"suite.json", "aa-in-process.jsonl", "prompts.csv"}
    assert not (out / "suite.json").exists() and not list(out.glob("*.jsonl"))


def test_a_users_own_prompts_csv_in_the_folder_is_never_overwritten(tmp_path):
    (tmp_path / "prompts.csv").write_text("id,category,text\nmine,short,My own words.\n")
    for force in (False, True):
        with pytest.raises(UserError, match="not a prompt set this suite wrote"):
            folder.check(tmp_path, ident(), force=force)
    assert "My own words" in (tmp_path / "prompts.csv").read_text()


def test_the_same_suite_may_resume_and_each_sitting_is_recorded(tmp_path):
    out = old_suite(tmp_path / "out")
    folder.check(out, ident())  # same profile, source, device and prompts: no clash
    manifest = folder.write_manifest(out, ident(), ["aa-in-process", "no-grad"], 3, resume=True)
    assert [s["resume"] for s in manifest["sittings"]] == [False, True]
    assert manifest["order"] == ["aa-in-process", "no-grad"] and manifest["order_seed"] == 3
    assert json.loads((out / "suite.json").read_text()) == manifest


def test_a_corrupt_manifest_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "suite.json").write_text("{half")
    with pytest.raises(UserError, match="suite.json is not readable JSON.*move it away"):
        folder.check(tmp_path, ident())


def test_fast_rejections_import_no_torch(tmp_path):
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"id,category,text\nq1,short,Hel\x00lo.\n")
    old_suite(tmp_path / "other", profile="quick")
    cases = [["run", "--out", str(tmp_path / "a"), "--prompts", str(nul)],
             ["run", "--out", str(tmp_path / "other")],
             ["synth", "   ", "--out", str(tmp_path / "x.wav")],
             ["synth", "Hello.", "--out", str(tmp_path / "missing" / "x.wav")],
             ["report", str(tmp_path / "nowhere")],
             ["synth", "Hello.", "--variant", "warp-drive", "--out", str(tmp_path / "x.wav")],
             ["run", "--variants", "no-grad,bf16+warp-drive", "--out", str(tmp_path / "b")],
             ["bench", "--combo", "fast-t4"]]
    for argv in cases:
        code = ("import sys\nfrom ttsopt import cli\ncode = cli.main(sys.argv[1:])\n"
                "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)")
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60,
                              cwd=REPO)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr, (argv, proc.stderr)


def _run(times, position):
    return pd.DataFrame({"time_utc": pd.to_datetime(times, utc=True).astype(str), "suite_position": position})


def test_runs_measured_after_a_pause_are_flagged_with_their_distance_from_the_reference():
    t0 = pd.Timestamp("2026-01-01T10:00:00Z")
    m = pd.Timedelta(minutes=1)
    runs = {"aa-in-process": _run([t0, t0 + 5 * m], 0),
            "no-grad": _run([t0 + 6 * m, t0 + 12 * m], 1),
            "bf16": _run([t0 + 5 * 60 * m, t0 + 5 * 60 * m + 9 * m], 2),
            "stream": _run([t0 + 5 * 60 * m + 10 * m, t0 + 5 * 60 * m + 15 * m], 3)}
    paused = table.after_pause(runs)
    assert set(paused) == {"bf16", "stream"}
    assert paused["bf16"] == pytest.approx((5 * 60 - 5) * 60)
    assert table.after_pause({k: runs[k] for k in ("aa-in-process", "no-grad")}) == {}


def test_the_catalogue_of_names_is_the_registry():
    from ttsopt import variants
    from ttsopt.core import catalog

    registry = variants.registry()
    assert {n: tuple(v.aliases) for n, v in registry.items()} == catalog.NAMES


@pytest.mark.slow
def test_a_suite_speaks_the_users_own_prompts_with_the_profiler_on(tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("id,category,text\nq1,short,Good morning.\nq2,short,See you soon.\nq3,long,Thanks a lot.\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "run", "--source", "tiny", "--profile", "smoke",
                           "--variants", "no-grad", "--prompts", str(mine), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = records.load(out)
    assert set(df["prompt_id"].dropna()) <= {"q1", "q2", "q3"} and (df["status"] == "ok").all()
    assert list((out / "traces").glob("aa-in-process.json*")), "the profiler pass ran on the user's prompt"
