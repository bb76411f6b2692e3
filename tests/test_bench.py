"""`ttsopt bench` from a shell, on the tiny model: one table of gains with intervals, the quality rows,
and with --save the records of every trial, read like any suite's."""
import copy
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ttsopt import variants
from ttsopt.core import records
from ttsopt.engine.stream import FIRST_PARTS
from ttsopt.experiment import bench, bench_quality
from ttsopt.measure.env import cpu_flags


def test_bench_prints_one_table_and_saves_every_trial(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "HF_TOKEN": "secret-canary-bench"}
    proc = subprocess.run([sys.executable, "-m", "ttsopt", "bench", "--source", "tiny", "--device", "cpu",
                           "--tokens", "6", "--trials", "2", "--stream", "--first-chunk", "3", "--batch", "2",
                           "--save", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("T3 tokens/s", "S3Gen flow s", "end-to-end RTF", "gain 95% CI low", "token match rate",
                "T3 teacher-forced logit", "weights read per step MiB", "device read bandwidth",
                "no fast step can beat", "T3 step, where it went", "products with the weights ms",
                "no step built from them can beat", "S3Gen flow compute floor", "arithmetic per flow call GFLOP",
                "no fast flow can beat", "floor / measured", "of which attention GFLOP",
                "resident after load MiB (own process)", "first synthesis peak above resident MiB (own process)",
                "load s (own process)", "first synthesis s (own process)", "stream: first audio s",
                bench_quality.NEEDS_REAL_WEIGHTS, "log-mel distance dB", "PESQ wideband", "STOI"):
        assert row in proc.stdout, row
    assert "word error rate" not in proc.stdout and "MOS" not in proc.stdout, "random weights: no scores of noise"
    combo, why = bench.best_combo("cpu", cpu_flags())
    assert f"combo {combo} ({why})" in proc.stdout
    printed = (out / "bench.txt").read_text()
    assert printed.startswith("$ ttsopt bench") and "--tokens 6" in printed.splitlines()[0]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "end-to-end RTF" in printed and "evidence:" in printed and "stream: first audio s" in printed
    assert bench_quality.NEEDS_REAL_WEIGHTS in printed
    scored = json.loads((out / "bench.quality.json").read_text())
    assert scored["random_weights"] is True and scored["sides"] == {}
    assert scored["fast_vs_baseline"]["log_mel_distance_db"]["value"] >= 0
    assert all(m["source"] for m in scored["fast_vs_baseline"].values())
    for clip in scored["clips"].values():
        assert clip["tokens"] == 6 and sf.info(str(out / clip["path"])).frames > 0
    df = records.load(out)
    trials = df[df["phase"] == "trial"]
    assert sorted(trials.groupby("side").size().to_dict().items()) == [("baseline", 2), ("variant", 2)]
    assert set(trials["seed"]) == {0, 1} and set(trials["n_tokens"]) == {6} and (trials["stage_t3_decode"] > 0).all()
    assert set(trials["pair"]) == {0, 1}
    # Each side's warm-up speaks the pairs' length, so no pair is the first call at a new length.
    warmups = df[df["phase"] == "warmup"]
    streamed, batched = warmups[warmups["x_chunks"].notna()], warmups[warmups["x_prompts"].notna()]
    spoken = warmups.drop(streamed.index.union(batched.index))
    assert sorted(spoken["side"]) == ["baseline", "variant"] and set(spoken["n_tokens"]) == {6}
    evidence = df[df["phase"] == "evidence"] if "evidence" in set(df["phase"]) else None
    assert evidence is None or evidence.empty  # bench shows its evidence in the text, not as a verdict
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert "secret-canary-bench" not in path.read_bytes().decode("utf-8", "replace"), path
    streams = df[df["phase"] == "stream"]
    assert sorted(streams.groupby("side").size().to_dict().items()) == [("baseline", 2), ("variant", 2)]
    assert (streams["x_first_audio_s"] > 0).all() and set(streams["pair"]) == {0, 1}
    parts = streams[[f"x_first_{part}" for part in FIRST_PARTS]].sum(axis=1)
    assert np.allclose(parts, streams["x_first_audio_s"]) and (streams["x_prompt_frames"] > 0).all()
    assert (streams["x_first_chunk_tokens"] == 3).all()
    # Each side streamed once untimed, chunked as the timed streams, before any of them.
    assert sorted(streamed["side"]) == ["baseline", "variant"] and (streamed["x_first_chunk_tokens"] == 3).all()
    assert streamed.index.max() < streams.index.min() and streamed["pair"].isna().all()
    # The first audio against its floors: the decode's and the flow's from the floors above, the rest as measured.
    floors = json.loads((out / "bench.floors.json").read_text())
    first, step, flow = floors["first_audio"], floors["t3_step"]["variant"], floors["flow"]
    assert "stream: first audio at the floors" in proc.stdout and "first audio cannot come sooner than" in proc.stdout
    assert first["first_chunk_tokens"] == 3 and 0 < first["flow_gflop"] < flow["variant"]["gflop"]
    parts = first["parts"]
    assert parts["decode_s"]["floor_s"] == pytest.approx(3 * step["floor_ms"] / 1e3)
    # Where each side's step went: its weight products and cache attention, profiled after the timings.
    for side in ("baseline", "variant"):
        profiled = floors["t3_step"][side]
        assert profiled["profiled_steps"] == 6 and profiled["products_ms"] > 0 and profiled["attention_ms"] > 0
        assert profiled["products_gb_s"] == pytest.approx(profiled["weight_mb"] * 2**20 / profiled["products_ms"] / 1e6)
    assert floors["t3_step"]["t3_kernel_gain_ceiling"] == pytest.approx(
        floors["t3_step"]["baseline"]["step_ms"] / (step["products_ms"] + step["attention_ms"]))
    assert sum(first["by_precision_gflop"].values()) == pytest.approx(first["flow_gflop"])
    assert parts["flow_s"]["floor_s"] == pytest.approx(sum(g / flow["rates_gflop_s"][kind]
                                                          for kind, g in first["by_precision_gflop"].items()))
    assert parts["prefill_s"]["floor_s"] is None and parts["vocode_s"]["floor_s"] is None
    assert first["floor_s"] == pytest.approx(parts["prefill_s"]["measured_s"] + parts["decode_s"]["floor_s"]
                                             + parts["flow_s"]["floor_s"] + parts["vocode_s"]["measured_s"])
    variant_streams = streams[streams["side"] == "variant"]
    assert first["first_audio_s"] == pytest.approx(variant_streams["x_first_audio_s"].median())
    # The batch against the same fast side one prompt at a time, once per pair, each side timed.
    batches = df[df["phase"] == "batch"]
    assert list(batched["side"]) == ["variant"] and batched.index.max() < batches.index.min()  # warmed up first
    assert sorted(batches.groupby("side").size().to_dict().items()) == [("baseline", 2), ("variant", 2)]
    assert set(batches["pair"]) == {0, 1} and (batches["x_prompts"] == 2).all()
    assert (batches["x_audio_s_per_wall_s"] > 0).all() and (batches["x_t3_s"] < batches["wall_s"]).all()
    match = pd.to_numeric(batches.loc[batches["side"] == "variant", "x_token_match"])
    assert match.between(0, 1).all() and "batch: audio s per wall s" in proc.stdout
    assert "the batch spoke the tokens one at a time spoke in" in proc.stdout
    load = df[(df["phase"] == "load") & (df["process"] == 0)].set_index("side")
    assert load.loc["variant", "mem_params_mb"] < load.loc["baseline", "mem_params_mb"]  # int8 linears
    # Each side alone in a fresh process of its own, once per pair in the pairs' alternating order:
    # one load and one first synthesis each, the pair as their round.
    alone = df[df["process"] >= 1]
    assert list(zip(alone["process"], alone["side"], alone["phase"], alone["round"])) == [
        (1, "baseline", "load", 0), (1, "baseline", "cold", 0), (2, "variant", "load", 0), (2, "variant", "cold", 0),
        (4, "variant", "load", 1), (4, "variant", "cold", 1), (3, "baseline", "load", 1), (3, "baseline", "cold", 1)]
    assert (alone.loc[alone["phase"] == "load", "mem_rss_resident_mb"] > 0).all()
    table = bench.table(df).set_index("metric (median)")
    for label, phase in (("load s (own process)", "load"), ("first synthesis s (own process)", "cold")):
        own = alone[alone["phase"] == phase].pivot(index="round", columns="side", values="wall_s")
        row = table.loc[label]
        assert [row["baseline"], row["fast"]] == own.median().loc[["baseline", "variant"]].tolist(), label
        gains = own["baseline"] / own["variant"]  # a time: baseline / fast, per pair
        assert row["n"] == 2 and row["gain"] == pytest.approx(np.exp(np.log(gains).mean())), label
        assert row["gain 95% CI low"] <= row["gain"] <= row["gain 95% CI high"], label
    # Each load says where it went: reading the model and each variant's own work, inside its wall time.
    loads = alone[alone["phase"] == "load"]
    for r in loads.itertuples():
        spent = json.loads(r.x_variants_s)
        assert list(spent) == ([] if r.side == "baseline" else combo.split("+")) and all(s > 0 for s in spent.values())
        assert r.x_model_load_s + sum(spent.values()) < r.wall_s
    parts = bench.load_parts(df)
    assert parts["n"] == 2 and set(parts["variant"]) == {"reading the model", *combo.split("+"), "the rest", "load"}
    assert "load s (own process), where it went" in proc.stdout
    resident = table.loc["resident after load MiB (own process)"]
    assert resident["n"] == 2 and resident["verdict"] in ("less memory", "more memory", "no measurable change",
                                                          "inconclusive (n = 2)")


def test_an_own_process_row_recorded_before_they_were_paired_reads_as_one_pair_and_decides_nothing():
    rows = [{"run_id": bench.RUN_ID, "phase": "load", "process": process, "side": side, "status": "ok",
             "design": "cross-process", "wall_s": wall, "mem_rss_resident_mb": mib}
            for process, side, wall, mib in ((1, "baseline", 5.0, 3000.0), (2, "variant", 20.0, 1500.0))]
    table = bench.table(pd.DataFrame(rows)).set_index("metric (median)")
    load, resident = table.loc["load s (own process)"], table.loc["resident after load MiB (own process)"]
    assert load["gain"] == pytest.approx(0.25) and load["n"] == 1 and load["verdict"] == "inconclusive (n = 1)"
    assert resident["gain"] == pytest.approx(2.0) and resident["verdict"] == "inconclusive (n = 1)"
    assert bench.load_parts(pd.DataFrame(rows)) == {}  # nor does it say where its load went


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed; it makes the speech")
def test_with_real_weights_bench_scores_each_side_and_the_fast_side_against_the_baseline(tmp_path):
    """Real weights cannot be loaded here: espeak-ng speech stands in for the two sides' clips, a
    VoiceEncoder with random weights for the model's (mechanics only), its embedding of the
    baseline clip for the voice the conditionals keep."""
    import torch
    from chatterbox.models.voice_encoder import VoiceEncoder

    text, sr = "Please call Stella and ask her to bring these things.", 24_000
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(tmp_path / "spoken.wav"), text], check=True)
    spoken, spoken_sr = sf.read(str(tmp_path / "spoken.wav"), dtype="float32")
    clean = librosa.resample(spoken, orig_sr=spoken_sr, target_sr=sr)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    rows = []
    for side, wav in (("baseline", clean), ("variant", noisy)):
        path = tmp_path / "audio" / "bench" / side / "bench.wav"
        path.parent.mkdir(parents=True)
        sf.write(str(path), wav, sr)
        rows.append({"run_id": bench.RUN_ID, "phase": "trial", "side": side, "seed": 0, "n_tokens": 120,
                     "audio_path": str(path.relative_to(tmp_path))})
    rows.append({**rows[0], "seed": 1, "audio_path": None})  # later pairs keep no clip
    torch.manual_seed(0)
    encoder = VoiceEncoder().eval()
    speaker = torch.from_numpy(encoder.embeds_from_wavs([librosa.resample(clean, orig_sr=sr, target_sr=16_000)],
                                                        sample_rate=16_000, as_spk=True))[None]
    conds = SimpleNamespace(t3=SimpleNamespace(speaker_emb=speaker))  # the voice the model holds
    tts = SimpleNamespace(ve=encoder, conds=conds)
    baseline = SimpleNamespace(model=SimpleNamespace(random_weights=False, tts=tts))
    scored = bench_quality.measure(tmp_path, pd.DataFrame(rows), bench.RUN_ID, baseline, text)
    sides = scored["sides"]
    assert set(sides) == {"baseline", "fast"} and scored["random_weights"] is False
    assert sides["baseline"]["voice_similarity_chatterbox"].value == pytest.approx(1.0, abs=1e-3)
    assert "chatterbox VoiceEncoder" in sides["fast"]["voice_similarity_chatterbox"].source
    assert "pocketsphinx" in sides["fast"]["word_error_rate"].source and "distillmos" in sides["fast"]["mos"].source
    assert scored["fast_vs_baseline"]["pesq_wb"].value < 4 and scored["fast_vs_baseline"]["stoi"].value < 1
    printed = "\n".join(bench_quality.lines(scored))
    for label in ("word error rate", "voice similarity", "MOS (1-5)", "log-mel distance dB", "PESQ wideband"):
        assert label in printed, label
    assert bench_quality.NEEDS_REAL_WEIGHTS not in printed
    assert json.loads(json.dumps(bench_quality.as_json(scored)))["sides"]["fast"]["mos"]["source"]

    rows[1]["n_tokens"] = 118  # real weights stop where they stop: the clips no longer line up
    apart = bench_quality.measure(tmp_path, pd.DataFrame(rows), bench.RUN_ID, baseline, text)["fast_vs_baseline"]
    assert all(m.value is None and "spoke 120 and 118 tokens" in m.source for m in apart.values())


def test_step_bytes_count_int8_weights_at_one_byte(tiny_model):
    """The floor's byte count: float32 linears at 4 bytes a weight, int8 at 1, KV by positions."""
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


def test_the_flop_count_covers_products_the_cpu_attention_kernel_and_int8_linears_by_kind():
    """The flow floor's arithmetic: a linear layer at two FLOPs per multiply-add whether float or
    dynamic int8, and the CPU's fused attention (which torch's counter has no formula for) as
    its two products, each counted in the kind it ran in."""
    import torch
    import torch.nn.functional as F

    from ttsopt.measure import roofline
    layer, x = torch.nn.Linear(64, 32), torch.randn(10, 64)
    int8 = torch.ao.nn.quantized.dynamic.Linear(64, 32)
    q = torch.randn(2, 4, 50, 16)
    with torch.inference_mode():
        n = 2 * 10 * 64 * 32
        assert roofline.count_flops(lambda: layer(x)) == (n, {"aten.addmm": n}, {"float32": n})
        assert roofline.count_flops(lambda: int8(x)) == (n, {"quantized.linear_dynamic": n}, {"int8-dynamic": n})
        assert roofline.count_flops(lambda: layer.to(torch.bfloat16)(x.bfloat16())).by_precision == {"bfloat16": n}
        flops, by_op, by_precision = roofline.count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 4 * 50 * 50 * 16)
    assert list(by_op) == ["aten._scaled_dot_product_flash_attention_for_cpu"] and by_precision == {"float32": flops}
    # Each kind's share at its own rate: an int8 estimator's float32 attention does not count at int8's rate.
    assert roofline.floor_seconds({"int8-dynamic": 300.0, "float32": 100.0}, {"int8-dynamic": 300.0,
                                                                              "float32": 50.0}) == 3.0
    with pytest.raises(ValueError, match="no device rate for arithmetic in float64"):
        roofline.floor_seconds({"float64": 1.0}, {"float32": 1.0})
    split = roofline.by_kind({"aten.addmm": 3, "quantized.linear_dynamic": 4, "aten.convolution": 5,
                              "aten._scaled_dot_product_flash_attention_for_cpu": 6, "aten.mm": 1})
    assert split == {"products": 8, "convolutions": 5, "attention": 6}


def test_the_flow_does_the_same_arithmetic_in_bfloat16_and_less_with_fewer_steps(tiny_model):
    """What the flow floor divides: precision changes the rate, not the count; fewer CFM steps
    change the count."""
    import torch

    from ttsopt import variants
    from ttsopt.engine.pipeline import Pipeline
    from ttsopt.measure import roofline
    tokens = torch.randint(0, 6561, (20,), generator=torch.Generator().manual_seed(0))
    counts = {}
    for spec in ("baseline", "fast-s3gen", "cfm-steps-4"):
        model = copy.copy(tiny_model)
        model.tts = copy.deepcopy(tiny_model.tts)
        pipeline = Pipeline(model)
        if spec != "baseline":
            variants.apply(pipeline, spec)
        conds = pipeline.conditioning()
        with torch.inference_mode():
            counts[spec] = roofline.count_flops(partial(pipeline.flow, tokens, conds))[0]
    assert counts["fast-s3gen"] == counts["baseline"] > counts["cfm-steps-4"] > 0


def test_a_rate_probe_of_an_unknown_kind_is_refused():
    from ttsopt.measure import roofline
    with pytest.raises(ValueError, match="no rate probe for 'int3'"):
        roofline.multiply_rates("cpu", "int3")
    assert len(roofline.multiply_rates("cpu", "float32", n=64, repeats=3)) == 3


FAST = "fast-t3+cpu-int8-t3+cpu-int8-head+fast-s3gen+fast-vocoder"


@pytest.mark.parametrize("flags, precision, turbo, combo", [
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bfloat16", "bfloat16", FAST + "+bf16-vocoder"),
    ({"avx2", "avx512f", "avx512_bf16"}, "int8", "bfloat16", FAST + "+bf16-vocoder"),
    ({"avx2", "fma"}, "int8", "int8", FAST), (set(), "int8", "int8", FAST)])
def test_the_cpu_default_says_which_precision_its_flow_and_vocoder_take(flags, precision, turbo, combo):
    """The original's and multilingual's estimator takes int8 linears on a CPU with avx512_bf16 but no
    AMX, attending and convolving in bfloat16; Turbo's stays bfloat16 there; the vocoder follows the bfloat16 units."""
    units = bool(flags & {"avx512_bf16", "amx_bf16"})
    for model, expected in (("original", precision), ("multilingual", precision), ("turbo", turbo)):
        chosen, why = bench.best_combo("cpu", flags, model)
        assert chosen == combo and "channels-last" in why
        assert f"flow estimator in {expected}" in why and ("emulated" in why) is not units
        products = units and expected == "int8" and "amx_bf16" not in flags
        assert ("bfloat16 products" in why) is products
        assert ("its convolutions in bfloat16" in why) is products  # where the int8 estimator attends in bfloat16
        assert ("in bfloat16 (this CPU has" in why) is combo.endswith("bf16-vocoder")
        assert ("alignment analyzer" in why) is (model == "multilingual")
        variants.parse(chosen)  # a combination the registry takes


def test_the_cuda_default_keeps_the_bf16_flow():
    assert bench.best_combo("cuda", set())[0] == "fast-t3+fast-s3gen"


def test_the_readme_bench_tables_are_what_the_saved_records_say():
    import importlib.util
    import re
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_table", root / "scripts" / "bench-table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- bench-table (\S+) -->\n(.*?)\n<!-- /bench-table -->", readme, re.S)
    assert blocks, "the README shows a saved bench's table"
    for directory, shown in blocks:
        assert shown == script.markdown(root / directory), f"regenerate: scripts/bench-table.py {directory} --readme"


@pytest.mark.parametrize("low, high, higher, verdict", [
    (1.10, 1.30, True, "faster"),            # tokens/s up by 10-30%
    (0.70, 0.90, False, "faster"),           # a time down by 10-30%
    (0.70, 0.90, True, "slower"),            # tokens/s down
    (0.98, 1.03, False, "no measurable change"),
    (0.84, 1.65, False, "inconclusive (n = 3)"),
])
def test_a_bench_row_names_its_verdict_from_the_interval_against_the_band(low, high, higher, verdict):
    from ttsopt.core import stats
    c = stats.Comparison("m", "m", (low * high) ** 0.5, low, high, 0.5, 3, "pairs", 0.05, None, 1.0, 1.0)
    assert c.reading(higher) == verdict


class _Records:
    """What `bench._batch` writes through: a run's record and write."""
    def __init__(self):
        self.rows = []

    def record(self, phase, side, **fields):
        return {"phase": phase, "side": side, **fields}

    def write(self, row):
        self.rows.append(row)


@pytest.mark.parametrize("combo, same", [("fast-t3", True), ("fast-t3+cpu-int8-t3", None)])
def test_a_batch_is_timed_against_one_at_a_time_and_says_whether_it_spoke_the_same(tiny_model, combo, same):
    from ttsopt import variants
    from ttsopt.engine.pipeline import Pipeline
    model = copy.copy(tiny_model)
    model.tts = copy.deepcopy(tiny_model.tts)
    pipeline = Pipeline(model, watermark=False)
    variants.apply(pipeline, combo)
    out, said = _Records(), []
    bench._batch(out, pipeline, "Hello world, and more words.", 3, 8, 2, 2, said.append)
    warm, *timed = out.rows  # the batch once untimed first: its shapes are not the pairs' warm-up's
    assert (warm["phase"], warm["side"], warm["extra"]["prompts"]) == ("warmup", "variant", 2) and "pair" not in warm
    out.rows = timed
    assert len(said) == 3 and [(r["side"], r["pair"]) for r in out.rows] in (
        [("baseline", 0), ("variant", 0), ("variant", 1), ("baseline", 1)],
        [("variant", 0), ("baseline", 0), ("baseline", 1), ("variant", 1)])
    assert all(r["wall_s"] > 0 and 0 < r["extra"]["t3_s"] < r["wall_s"] and r["extra"]["prompts"] == 2
               for r in out.rows)
    batched = [r["extra"] for r in out.rows if r["side"] == "variant"]
    if same:  # float layers: the batch is one at a time, by construction of its random streams
        assert all(e["token_match"] == 1.0 for e in batched)
    assert all(0 <= e["token_match"] <= 1 for e in batched)


@pytest.mark.parametrize("model, combo", [("multilingual", None), ("original", "alignment-analyzer+fast-t3")])
def test_a_batch_of_a_t3_with_the_alignment_analyzer_is_refused_before_anything_is_written(tmp_path, model, combo):
    from ttsopt.core.errors import UserError
    with pytest.raises(UserError, match="alignment analyzer"):
        bench.run(tmp_path / "out", source="tiny", device="cpu", combo=combo, text="Hello.", tokens=4, trials=1,
                  seed=0, stream=False, batch=2, model=model)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("variant, cause", [("fast-t3+cpu-int8-t3+fast-s3gen", "dynamic int8"),
                                            ("fast-t3+fast-s3gen", "defect")])
def test_a_batch_that_spoke_other_tokens_is_blamed_on_int8_only_where_the_combination_has_it(variant, cause):
    from ttsopt.cli.bench import _batch_lines
    rows = pd.DataFrame({"side": ["baseline", "variant", "baseline", "variant"], "pair": [0, 0, 1, 1],
                         "seed": 3, "x_prompts": 2, "variant": variant,
                         "x_token_match": [None, 1.0, None, 0.75]})
    lines = _batch_lines(rows)
    assert "in 1 of 2 pair(s) (token match 0.7500 at worst)" in lines[1] and cause in lines[2]
    assert len(_batch_lines(rows.assign(x_token_match=[None, 1.0, None, 1.0]))) == 2  # all the same: no blame


def test_the_bandwidth_probe_says_when_the_device_read_at_another_speed_before_and_after():
    gb = 1e9
    steady = bench.bandwidth_probe([30 * gb, 31 * gb], [32 * gb, 33 * gb], "cpu")
    assert "2 before loading" in steady and "2 after" in steady and "differ" not in steady
    moved = bench.bandwidth_probe([30 * gb, 31 * gb], [52 * gb, 56 * gb], "cpu")
    assert "The two medians differ by 77%" in moved and "the floor moves with it" in moved
