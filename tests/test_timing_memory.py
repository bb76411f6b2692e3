import mmap
import time

import pytest
import torch

from ttsopt import memory, timing

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
    with torch.profiler.profile(activities=cpu_only, acc_events=True) as prof:
        with st.stage("t3_prefill"):
            torch.ones(8) @ torch.ones(8)
    assert "t3_prefill" in {e.key for e in prof.key_averages()}


def test_wall_timer():
    with timing.wall_timer("cpu") as t:
        time.sleep(0.01)
    assert 0.01 <= t.seconds < 1.0


def test_cpu_memory_metrics_are_named_and_sane():
    # Fresh pages straight from the kernel: malloc may hand back memory that an earlier test
    # freed and that is still resident, and then the process (rightly) does not grow.
    size = 64 * 2**20
    with memory.track("cpu") as mem:
        held = mmap.mmap(-1, size)
        held.write(b"\1" * size)  # touched, alive past the block
    m = mem.as_dict()
    assert set(m) == {"rss_peak_mb", "rss_mb", "rss_delta_mb"}
    assert m["rss_peak_mb"] >= m["rss_mb"] > 0
    assert m["rss_delta_mb"] > 32
    held.close()


def test_memory_metrics_need_the_block_to_end():
    with memory.track("cpu") as mem:
        with pytest.raises(RuntimeError):
            mem.as_dict()


@cuda
def test_cuda_stage_times_wait_for_the_device():
    st = timing.StageTimes("cuda")
    x = torch.randn(4096, 4096, device="cuda")
    with timing.wall_timer("cuda") as wall:
        with st.stage("matmul"):
            for _ in range(20):
                x = x @ x / 64
    # Launches alone take microseconds; events must see the device work.
    assert st.as_dict()["matmul"] > 0.2 * wall.seconds


@cuda
def test_cuda_memory_metrics():
    with memory.track("cuda") as mem:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    m = mem.as_dict()
    assert m["torch_peak_allocated_mb"] >= 256
    assert m["torch_peak_reserved_mb"] >= m["torch_peak_allocated_mb"]
    assert "nvml_process_used_mb" in m or "nvml_process_used_mb_unavailable" in m
    del x
