"""`ttsopt bench` from a shell, on the tiny model: one table of gains with intervals, and with --save
the records of every trial, read like any suite's."""
import os
import subprocess
import sys

import pytest

from ttsopt.core import records
from ttsopt.experiment import bench
from ttsopt.measure.env import cpu_flags


def test_bench_prints_one_table_and_saves_every_trial(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "HF_TOKEN": "secret-canary-bench"}
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "bench", "--source", "tiny", "--device", "cpu",
                           "--tokens", "6", "--trials", "2", "--stream", "--batch", "2", "--save", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("T3 tokens/s", "S3Gen flow s", "end-to-end RTF", "gain 95% CI low", "token match rate",
                "T3 teacher-forced logit", "weights read per step MiB", "device read bandwidth",
                "no fast step can beat",
                "resident after load MiB"):
        assert row in proc.stdout, row
    combo, why = bench.best_combo("cpu", cpu_flags())
    assert f"combo {combo} ({why})" in proc.stdout
    printed = (out / "bench.txt").read_text()
    assert printed.startswith("$ ttsopt bench") and "--tokens 6" in printed.splitlines()[0]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "end-to-end RTF" in printed and "evidence:" in printed and "first audio after" in printed
    df = records.load(out)
    trials = df[df["phase"] == "trial"]
    assert sorted(trials.groupby("side").size().to_dict().items()) == [("baseline", 2), ("variant", 2)]
    assert set(trials["seed"]) == {0, 1} and set(trials["n_tokens"]) == {6} and (trials["stage_t3_decode"] > 0).all()
    assert set(trials["pair"]) == {0, 1}
    evidence = df[df["phase"] == "evidence"] if "evidence" in set(df["phase"]) else None
    assert evidence is None or evidence.empty  # bench shows its evidence in the text, not as a verdict
    for path in out.iterdir():
        assert "secret-canary-bench" not in path.read_bytes().decode("utf-8", "replace"), path
    stream = df[df["phase"] == "stream"].iloc[0]
    batch = df[df["phase"] == "batch"].iloc[0]
    assert stream["x_first_audio_s"] > 0 and batch["x_prompts"] == 2 and batch["x_audio_s_per_wall_s"] > 0
    load = df[df["phase"] == "load"].set_index("side")
    assert load.loc["variant", "mem_params_mb"] < load.loc["baseline", "mem_params_mb"]  # int8 linears


def test_step_bytes_count_int8_weights_at_one_byte(tiny_model):
    """The floor's byte count: float32 linears at 4 bytes a weight, int8 at 1, KV by positions."""
    import copy

    from ttsopt.engine import quant
    from ttsopt.measure import roofline
    t3 = copy.deepcopy(tiny_model.t3)
    linears = [m for m in t3.tfmr.modules() if type(m).__name__ == "Linear"]
    n_linear = sum(m.weight.numel() for m in linears)
    before = roofline.weight_bytes(t3)
    quant.quantize_linears(t3.tfmr)
    after = roofline.weight_bytes(t3)
    assert before - after == n_linear * 3  # 4 bytes -> 1 byte per linear weight, nothing else moved
    c = t3.tfmr.config
    per_position = 2 * c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 4
    assert roofline.step_bytes(t3, 100, 20) - after == per_position * 110


@pytest.mark.parametrize("flags, flow_in_bf16", [({"avx2", "avx512f", "amx_bf16", "amx_tile"}, True),
                                                 ({"avx2", "avx512f", "avx512_bf16"}, True),
                                                 ({"avx2", "fma"}, False), (set(), False)])
def test_the_cpu_default_puts_the_flow_in_bfloat16_only_with_bf16_units(flags, flow_in_bf16):
    combo, why = bench.best_combo("cpu", flags)
    assert ("fast-s3gen" in combo.split("+")) is flow_in_bf16
    assert "cpu-int8-t3" in combo.split("+") and ("emulated" in why) is not flow_in_bf16


def test_the_cuda_default_keeps_the_bf16_flow():
    assert bench.best_combo("cuda", set())[0] == "fast-t3+fast-s3gen"
