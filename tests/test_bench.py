"""`ttsopt bench` from a shell, on the tiny model: one table, and with --save the raw trials."""
import json
import os
import subprocess
import sys


def test_bench_prints_one_table_and_saves_every_trial(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "HF_TOKEN": "secret-canary-bench"}
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "bench", "--source", "tiny", "--device", "cpu",
                           "--tokens", "6", "--trials", "2", "--save", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("T3 tokens/s", "S3Gen flow s", "end-to-end RTF", "token match rate", "T3 teacher-forced logit"):
        assert row in proc.stdout
    assert "combo fast-t3+cpu-int8-t3+fast-s3gen" in proc.stdout
    printed = (out / "bench.txt").read_text()
    assert "end-to-end RTF" in printed and "evidence:" in printed
    record = json.loads((out / "bench.json").read_text())
    assert [len(record["trials"][side]) for side in ("baseline", "fast")] == [2, 2]
    trial = record["trials"]["fast"][1]
    assert trial["seed"] == 1 and trial["n_tokens"] == 6 and trial["stages"]["t3_decode"] > 0
    assert set(record["evidence"]) == {"fast-t3", "cpu-int8-t3", "fast-s3gen"}
    assert "--tokens 6" in record["command"] and record["environment"]["torch"]
    assert "secret-canary-bench" not in (out / "bench.json").read_text()
