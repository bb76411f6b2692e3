import json
import math

import numpy as np
import pytest

from ttsopt.core import records as results
from ttsopt.core.records import TrialRecord


def trial(trial=0, **overrides):
    record = dict(
        variant="baseline", role="aa", design="in-process", side="baseline", source="tiny", device="cpu",
        prompt_id="p1", category="short", seed=0, trial=trial, phase="trial",
        status="ok", error=None, n_tokens=50, audio_s=2.0, wall_s=1.0, rtf=0.5,
        tokens_per_s=80.0, stage_t3_decode=0.6, mem_rss_synth_peak_mb=90.0,
        evidence=json.dumps({"dtype": "float32"}),
    )  # fmt: skip
    record.update(overrides)
    return record


def test_round_trip(tmp_path):
    store = results.Store(tmp_path, "run1")
    store.append(trial(0))
    store.append(trial(1, rtf=np.float32(0.25), n_tokens=np.int64(7)))
    store.append(dict(variant="baseline", phase="load", status="ok", wall_s=3.0))
    store.write_env({"torch": "2.11", "gpu_name": None})
    store.write_env({"torch": "2.11", "gpu_name": None, "process": "second"}, process=1)

    df = results.load(tmp_path)
    assert len(df) == 3
    assert list(df.columns[: len(results.CORE_COLUMNS)]) == results.CORE_COLUMNS
    assert df.loc[0, "time_utc"].endswith("+00:00")
    assert "_crc" not in df.columns
    assert set(df["run_id"]) == {"run1"}
    assert set(df["schema"]) == {results.SCHEMA_VERSION}
    assert df.loc[1, "rtf"] == 0.25
    assert df.loc[1, "n_tokens"] == 7
    assert df.loc[0, "stage_t3_decode"] == 0.6
    assert math.isnan(df.loc[2, "rtf"])
    assert json.loads(df.loc[0, "evidence"]) == {"dtype": "float32"}
    assert results.load_env(tmp_path) == {"run1": {"torch": "2.11", "gpu_name": None}}  # the first process's


def test_load_reads_runs_in_subdirectories(tmp_path):
    results.Store(tmp_path / "a", "run_a").append(trial(variant="baseline", run_id="run_a"))
    results.Store(tmp_path / "b", "run_b").append(trial(variant="bf16", role="variant", run_id="run_b"))
    df = results.load(tmp_path)
    assert sorted(df["run_id"]) == ["run_a", "run_b"]


def test_empty_store_has_the_core_columns(tmp_path):
    df = results.load(tmp_path)
    assert df.empty
    assert list(df.columns) == results.CORE_COLUMNS


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    store = results.Store(tmp_path, "run1")
    for t in range(3):
        store.append(trial(t))
    size = store.path.stat().st_size
    with open(store.path, "r+b") as f:
        f.truncate(size - 20)  # a kill in the middle of the last write
    with pytest.warns(UserWarning, match=r"run1\.jsonl:3"):
        df = results.load(tmp_path)
    assert list(df["trial"]) == [0, 1]


def test_resuming_after_a_torn_line_keeps_new_records(tmp_path):
    store = results.Store(tmp_path, "run1")
    store.append(trial(0))
    store.append(trial(1))
    with open(store.path, "r+b") as f:
        f.truncate(store.path.stat().st_size - 20)
    results.Store(tmp_path, "run1").append(trial(2))
    with pytest.warns(UserWarning):
        df = results.load(tmp_path)
    assert list(df["trial"]) == [0, 2]


def test_corrupted_checksum_is_rejected(tmp_path):
    store = results.Store(tmp_path, "run1")
    store.append(trial(0))
    store.append(trial(1))
    lines = store.path.read_text().splitlines()
    lines[0] = lines[0].replace('"rtf":0.5', '"rtf":0.4')  # still valid JSON
    store.path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"run1\.jsonl:1"):
        df = results.load(tmp_path)
    assert list(df["trial"]) == [1]


def test_invalid_records_are_refused(tmp_path):
    store = results.Store(tmp_path, "run1")
    with pytest.raises(ValueError, match="phase"):
        store.append(trial(phase="warm-up"))
    with pytest.raises(ValueError, match="status"):
        store.append(trial(status="skipped"))
    with pytest.raises(ValueError, match="run_id"):
        store.append(trial(run_id="other"))
    with pytest.raises(ValueError, match="side"):
        store.append(trial(side="treatment"))
    with pytest.raises(ValueError, match="design"):
        store.append(trial(design="sideways"))
    assert not store.path.exists()


def test_completed_keys(tmp_path):
    store = results.Store(tmp_path, "run1")
    store.append(dict(variant="baseline", phase="load", status="ok", process=0))
    store.append(trial(0, process=0))
    store.append(trial(1, process=0, status="failed", error="CUDA out of memory"))
    results.Store(tmp_path, "run2").append(trial(2, process=0, run_id="run2"))
    assert results.completed_keys(tmp_path, "run1") == {
        ("run1", 0, None, None, None, None, "load"),
        ("run1", 0, "baseline", "p1", 0, 0, "trial"),
    }
    assert ("run2", 0, "baseline", "p1", 0, 2, "trial") in results.completed_keys(tmp_path)


def test_a_trial_record_flattens_to_the_documented_columns(tmp_path):
    record = TrialRecord(run_id="run1", variant="bf16", phase="trial", side="variant", prompt_id="p1",
                         stages={"t3_decode": 0.5}, mem={"rss_synth_peak_mb": 12.0}, fid={"token_match": 1.0},
                         extra={"chunks": 2})
    results.Store(tmp_path, "run1").append(record)
    row = results.load(tmp_path).iloc[0]
    assert (row["stage_t3_decode"], row["mem_rss_synth_peak_mb"], row["fid_token_match"], row["x_chunks"]) == \
        (0.5, 12.0, 1.0, 2)
    documented = {c.name for c in results.COLUMNS}
    prefixes = tuple(p for p in results.PREFIXES)
    for column in row.dropna().index:
        assert column in documented or column.startswith(prefixes), column
    assert "| `run_id` |" in results.schema_markdown()


def test_secrets_never_reach_any_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-canary")
    store = results.Store(tmp_path, "run1")
    store.append(trial(error="auth failed for secret-canary", evidence='{"t": "secret-canary"}'))
    store.write_env({"note": "secret-canary", "nested": ["x secret-canary"]})
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 2
    for path in written:
        assert "secret-canary" not in path.read_text()
    assert results.load(tmp_path).loc[0, "error"] == "auth failed for [redacted]"
