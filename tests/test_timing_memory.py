import mmap
import time

import pytest
import torch

from ttsopt.measure import memory, timing, weights

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")


def test_stages_accumulate_in_first_seen_order():
    st = timing.StageTimes("cpu")
    with st.stage("t3_decode"):
        time.sleep(0.01)
    with st.stage("s3gen_flow"):
        time.sleep(0.005)
    with st.stage("t3_decode"):
        time.sleep(0.01)
    times = st.as_dict()
    assert list(times) == ["t3_decode", "s3gen_flow"]
    assert times["t3_decode"] >= 0.02
    assert 0.005 <= times["s3gen_flow"] < times["t3_decode"]
    assert st.total == pytest.approx(sum(times.values()))


def test_stage_time_is_kept_when_the_stage_raises():
    st = timing.StageTimes("cpu")
    with pytest.raises(RuntimeError), st.stage("vocoder"):
        time.sleep(0.005)
        raise RuntimeError
    assert st.as_dict()["vocoder"] >= 0.005


def test_stages_are_labelled_in_profiler_traces():
    st = timing.StageTimes("cpu")
    cpu_only = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu_only, acc_events=True) as prof, st.stage("t3_prefill"):
        torch.ones(8) @ torch.ones(8)
    assert "t3_prefill" in {e.key for e in prof.key_averages()}


def test_wall_timer():
    with timing.wall_timer("cpu") as t:
        time.sleep(0.01)
    assert 0.01 <= t.seconds < 1.0


def _touch(mib: int) -> mmap.mmap:
    # Fresh pages straight from the kernel: malloc may hand back memory that an earlier test
    # freed and that is still resident, and then the process (rightly) does not grow.
    held = mmap.mmap(-1, mib * 2**20)
    chunk = b"\1" * 2**20
    for _ in range(mib):  # a chunk at a time: one big bytes object would double the peak
        held.write(chunk)
    return held


def test_synthesis_peak_sees_memory_held_only_during_the_block():
    """200 MB allocated and freed inside one synthesis: its peak sees it though the process ends
    the block no larger, and a peak reached before the block does not leak into the next one."""
    earlier = _touch(300)
    earlier.close()  # a high-water mark from before, like loading float32 weights before a cast
    with memory.track("cpu", "synth") as mem:
        transient = _touch(200)
        transient.close()
    m = mem.as_dict()
    assert 190 <= m["rss_synth_peak_mb"] < 290, m
    with memory.track("cpu", "synth") as quiet:
        pass
    assert quiet.as_dict()["rss_synth_peak_mb"] < 10


def test_resident_after_a_load_counts_what_stays_not_what_was_freed():
    with memory.track("cpu", "load") as mem:
        kept = _touch(96)
        freed = _touch(128)
        freed.close()
    m = mem.as_dict()
    assert 90 <= m["rss_resident_mb"] < 120, m
    assert m["rss_load_peak_mb"] >= 96 + 128 - 16
    kept.close()


def test_weights_by_dtype_count_quantized_linears_in_their_own_bytes(tiny_model):
    import copy

    from ttsopt.engine import quant
    t3 = copy.deepcopy(tiny_model.t3)
    before = weights.as_metrics({"t3": t3})
    quant.quantize_linears(t3.tfmr)
    after = weights.as_metrics({"t3": t3})
    assert after["params_qint8_mb"] > 0 and "params_qint8_mb" not in before
    assert after["params_mb"] < before["params_mb"]
    assert before["params_mb"] == sum(v for k, v in before.items() if k != "params_mb")


def test_memory_metrics_need_the_block_to_end():
    with memory.track("cpu") as mem, pytest.raises(RuntimeError):
        mem.as_dict()


@cuda
def test_cuda_stage_times_wait_for_the_device():
    st = timing.StageTimes("cuda")
    x = torch.randn(4096, 4096, device="cuda")
    with timing.wall_timer("cuda") as wall, st.stage("matmul"):
        for _ in range(20):
            x = x @ x / 64
    # Launches alone take microseconds; events must see the device work.
    assert st.as_dict()["matmul"] > 0.2 * wall.seconds


@cuda
def test_cuda_memory_metrics():
    with memory.track("cuda", "load") as mem:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        y = torch.empty(128 * 2**20, dtype=torch.uint8, device="cuda")
        del y
    m = mem.as_dict()
    assert m["cuda_load_peak_mb"] >= 384 and 255 <= m["cuda_resident_mb"] < 300
    assert m["cuda_reserved_mb"] >= m["cuda_resident_mb"]
    assert "nvml_process_used_mb" in m or "nvml_process_used_mb_unavailable" in m
    del x


def test_operators_of_a_call_lists_what_it_ran_most_expensive_first():
    from ttsopt.measure import profiler
    a = torch.randn(256, 256)
    table = profiler.operators_of(lambda: [torch.mm(a, a) for _ in range(3)] + [a.add(1)], torch.device("cpu"))
    mm = table[table["name"] == "aten::mm"]
    assert len(mm) == 1 and int(mm["calls"].iloc[0]) == 3 and "aten::add" in set(table["name"])
    assert list(table["self_cpu_ms"]) == sorted(table["self_cpu_ms"], reverse=True)


def test_step_parts_gather_weight_products_and_cache_attention_apart_from_the_rest():
    from ttsopt.engine.quant import quantize_linears
    from ttsopt.measure import profiler
    torch.manual_seed(0)
    layers = quantize_linears(torch.nn.Sequential(torch.nn.Linear(64, 64)))
    head = torch.nn.Linear(64, 32)
    x, q, kv = torch.randn(2, 64), torch.randn(2, 4, 1, 16), torch.randn(2, 4, 9, 16)

    def step():
        h = layers(x).relu()
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv)
        return head(h).softmax(-1)

    with torch.inference_mode():
        table = profiler.operators_of(step, torch.device("cpu"))
    parts = profiler.step_parts(table)
    assert set(parts) == set(profiler.STEP_PARTS) and all(v > 0 for v in parts.values())
    named = dict(zip(table["name"], table["name"].map(profiler.step_part), strict=True))
    assert named["quantized::linear_dynamic"] == "products" and named["aten::addmm"] == "products"
    assert any(part == "attention" for name, part in named.items() if "attention" in name)
    assert named["aten::relu"] == "rest" and named["aten::_softmax"] == "rest"
    assert sum(parts.values()) == pytest.approx(table["self_cpu_ms"].sum())
