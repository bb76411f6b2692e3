"""Memory metrics, each under its own name and for one phase.

`track(device, phase)` measures a block (a model load, one synthesis) and names what it saw
after the phase, so numbers from different questions are never mixed:
- `rss_<phase>_peak_mb`: the process's resident high-water mark during the block, above the
  resident set at its start. The kernel's high-water mark is reset when the block starts
  (`/proc/self/clear_refs`), so a peak reached earlier in the process (loading float32 weights
  before a variant cast them) cannot mask the block's own.
- `rss_resident_mb` (phase load): resident set after the block, freed memory handed back to the
  system first (`gc` and glibc's `malloc_trim`), minus the resident set at its start: what
  the loaded and prepared model keeps.
- `cuda_<phase>_peak_mb`, `cuda_resident_mb`: the same for torch's CUDA allocator (peak
  allocated reset at the start; allocated after, minus before).
- `cuda_reserved_mb`: what the caching allocator holds from the driver after the block;
  `nvml_process_used_mb`: what the driver says the process uses (as `nvidia-smi` shows it).
- `rss_mb`: the resident set when the block ends, whole process.
All sizes are MiB (2**20 bytes). `weights.by_dtype` gives the bytes of the weights themselves.
"""
from __future__ import annotations

import ctypes
import gc
import os
from contextlib import contextmanager

import torch

_MIB = 2**20


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / _MIB
    except OSError:
        pass  # no /proc (macOS): the metric is not reported
    return None


def rss_mb() -> float | None:
    return _status_kb("VmRSS")


def hwm_mb() -> float | None:
    return _status_kb("VmHWM")


def reset_peak() -> bool:
    """Reset the kernel's resident high-water mark to the current resident set (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim() -> None:
    """Hand freed memory back to the system: collect garbage, then glibc's malloc_trim.

    glibc keeps freed blocks below its mmap threshold (which grows up to 32 MiB as large blocks
    are freed) in its heap; without a trim a cast or quantized model's old float weights would
    still count as resident."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: freed memory is returned as that allocator decides


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
        # Match by UUID, not index: CUDA_VISIBLE_DEVICES renumbers torch's devices but not NVML's.
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
    def __init__(self):
        self._metrics: dict[str, float | str] | None = None

    def as_dict(self) -> dict[str, float | str]:
        if self._metrics is None:
            raise RuntimeError("memory metrics are available once the track() block exits")
        return dict(self._metrics)


def _cuda_device(device: torch.device) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if device.index is None else device


@contextmanager
def track(device="cpu", phase: str = "synth"):
    """`with track(device, "load") as mem: ...` then `mem.as_dict()`; PHASE is "load" or "synth"."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    load = phase == "load"
    if load:
        trim()  # the start of a load is measured against a trimmed process too
    if cuda:
        device = _cuda_device(device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_start = torch.cuda.memory_allocated(device)
    rss_start = rss_mb()
    peak_reset = reset_peak()
    report = MemoryReport()
    try:
        yield report
    finally:
        m: dict[str, float | str] = {}
        hwm = hwm_mb()
        if rss_start is not None and hwm is not None and peak_reset:
            m[f"rss_{phase}_peak_mb"] = max(hwm - rss_start, 0.0)
        if cuda:
            torch.cuda.synchronize(device)
            m[f"cuda_{phase}_peak_mb"] = (torch.cuda.max_memory_allocated(device) - cuda_start) / _MIB
            if load:
                m["cuda_resident_mb"] = (torch.cuda.memory_allocated(device) - cuda_start) / _MIB
            m["cuda_reserved_mb"] = torch.cuda.memory_reserved(device) / _MIB
            used, why = _nvml_process_used_mb(device)
            if why is None:
                m["nvml_process_used_mb"] = used
            else:
                m["nvml_process_used_mb_unavailable"] = why
        if load:
            trim()
            after = rss_mb()
            if rss_start is not None and after is not None:
                m["rss_resident_mb"] = after - rss_start
        now = rss_mb()
        if now is not None:
            m["rss_mb"] = now
        report._metrics = m
