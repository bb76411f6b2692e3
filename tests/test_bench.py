"""`ttsopt bench` from a shell, on the tiny model: one table, and with --save the raw trials."""
import json
import os
import subprocess
import sys


def test_bench_prints_one_table_and_saves_every_trial(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "HF_TOKEN": "secret-canary-bench"}
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "bench", "--source", "tiny", "--device", "cpu",
                           "--tokens", "6", "--trials", "2", "--stream", "--batch", "2", "--save", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("T3 tokens/s", "S3Gen flow s", "end-to-end RTF", "token match rate", "T3 teacher-forced logit",
                "weights read per step MB", "device read bandwidth", "no fast step can beat"):
        assert row in proc.stdout
    assert "combo fast-t3+cpu-int8-t3+fast-s3gen" in proc.stdout
    printed = (out / "bench.txt").read_text()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "end-to-end RTF" in printed and "evidence:" in printed
    record = json.loads((out / "bench.json").read_text())
    assert [len(record["trials"][side]) for side in ("baseline", "fast")] == [2, 2]
    trial = record["trials"]["fast"][1]
    assert trial["seed"] == 1 and trial["n_tokens"] == 6 and trial["stages"]["t3_decode"] > 0
    assert set(record["evidence"]) == {"fast-t3", "cpu-int8-t3", "fast-s3gen"}
    assert "--tokens 6" in record["command"] and record["environment"]["torch"]
    assert "secret-canary-bench" not in (out / "bench.json").read_text()
    assert record["stream"]["first_audio_s"] > 0 and record["batch"]["prompts"] == 2
    assert record["batch"]["audio_s_per_wall_s"] > 0 and "first audio after" in printed
    assert record["model_weights_mb"]["fast"] < record["model_weights_mb"]["baseline"]
    floor = record["memory_floor"]
    # int8 linears are a quarter of float32's bytes; the KV cache is the same on both sides
    assert floor["fast"]["weight_mb"] < floor["baseline"]["weight_mb"]
    assert floor["baseline"]["step_mb"] - floor["baseline"]["weight_mb"] == \
        floor["fast"]["step_mb"] - floor["fast"]["weight_mb"] > 0
    assert floor["read_bandwidth_gb_s"] > 0 and floor["t3_gain_ceiling"] > 0


def test_step_bytes_count_int8_weights_at_one_byte(tiny_model):
    """The floor's byte count: float32 linears at 4 bytes a weight, int8 at 1, KV by positions."""
    import copy

    from ttsopt.fast import int8, traffic
    t3 = copy.deepcopy(tiny_model.t3)
    linears = [m for m in t3.tfmr.modules() if type(m).__name__ == "Linear"]
    n_linear = sum(m.weight.numel() for m in linears)
    before = traffic.weight_bytes(t3)
    int8.quantize_linears(t3.tfmr)
    after = traffic.weight_bytes(t3)
    assert before - after == n_linear * 3  # 4 bytes -> 1 byte per linear weight, nothing else moved
    c = t3.tfmr.config
    per_position = 2 * c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 4
    assert traffic.step_bytes(t3, 100, 20) - after == per_position * 110
