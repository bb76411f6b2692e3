"""Memory metrics for a block of code, each under its own name.

The numbers answer different questions and must never be mixed:
- torch_peak_allocated_mb: peak of tensors alive at once (CUDA caching allocator).
- torch_peak_reserved_mb: peak the allocator held from the driver, cached blocks included.
- nvml_process_used_mb: what the driver says this process uses on the GPU, CUDA context
  included, sampled when the block exits (it is what `nvidia-smi` shows).
- rss_peak_mb: peak resident set of the whole process since it started (getrusage is
  monotone, so it only describes one variant when each variant runs in its own process).
- rss_mb: resident set when the block exits; rss_delta_mb: rss_mb minus the value at entry.
All sizes are MiB (2**20 bytes).
"""

import os
import resource
import sys
from contextlib import contextmanager

import torch

_MIB = 2**20


def _rss_now_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / _MIB  # reported in kB
    except OSError:
        pass  # no /proc (macOS): the current RSS is simply not reported
    return None


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / _MIB if sys.platform == "darwin" else peak * 1024 / _MIB


def _nvml_process_used_mb(device: torch.device) -> tuple[float | None, str | None]:
    """(MiB, None) or (None, why it is unavailable)."""
    try:
        import pynvml
    except ImportError:
        return None, "pynvml not installed (package nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return None, f"NVML unavailable: {e}"
    try:
        # Match by UUID, not index: CUDA_VISIBLE_DEVICES renumbers torch's devices
        # but not NVML's.
        uuid = torch.cuda.get_device_properties(device).uuid
        handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid():
                if proc.usedGpuMemory is None:
                    return None, "NVML does not report per-process memory here"
                return proc.usedGpuMemory / _MIB, None
        # In a container NVML may list host PIDs, which never match ours.
        return None, "this process not found in NVML's process list"
    except pynvml.NVMLError as e:
        return None, f"NVML query failed: {e}"
    finally:
        pynvml.nvmlShutdown()


class MemoryReport:
    def __init__(self, device: torch.device):
        self.device = device
        self._metrics: dict[str, float | str] | None = None

    def as_dict(self) -> dict[str, float | str]:
        if self._metrics is None:
            raise RuntimeError("memory metrics are available once the track() block exits")
        return dict(self._metrics)


@contextmanager
def track(device="cpu"):
    """`with track(device) as mem: ...` then `mem.as_dict()`."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    report = MemoryReport(device)
    rss_before = _rss_now_mb()
    try:
        yield report
    finally:
        metrics: dict[str, float | str] = {}
        if cuda:
            torch.cuda.synchronize(device)
            metrics["torch_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / _MIB
            metrics["torch_peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / _MIB
            used, why = _nvml_process_used_mb(device)
            if why is None:
                metrics["nvml_process_used_mb"] = used
            else:
                metrics["nvml_process_used_mb_unavailable"] = why
        rss_after = _rss_now_mb()
        # The two reads are not atomic; a peak below the current value is a race.
        metrics["rss_peak_mb"] = max(_rss_peak_mb(), rss_after or 0.0)
        if rss_after is not None:
            metrics["rss_mb"] = rss_after
            metrics["rss_delta_mb"] = rss_after - rss_before
        report._metrics = metrics
