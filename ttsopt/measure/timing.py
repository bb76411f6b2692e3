"""Timers that measure when device work finishes, not when it was queued.

CUDA kernels run asynchronously, so a host clock read right after a launch measures the
launch, not the work. On CUDA, stages are timed with event pairs on the stream and the
wall timer synchronizes before reading the clock; on CPU both use `time.perf_counter`.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch


def _device(device) -> torch.device:
    device = torch.device(device)
    # A bare "cuda" means the current device; resolve it so events and
    # synchronizes land on the same one.
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class StageTimes:
    """Seconds per named stage, accumulated over repeated entries, in first-seen order.

    Stages are meant to be disjoint: `total` adds them up, so nested stages would be
    counted twice.
    """

    def __init__(self, device="cpu"):
        self.device = _device(device)
        self._seconds: dict[str, float] = {}
        # CUDA event pairs are only read at as_dict(), so timing a stage never forces
        # a synchronize inside the code being measured.
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def stage(self, name: str):
        self._seconds.setdefault(name, 0.0)
        # The label makes stages visible in torch.profiler traces.
        with torch.profiler.record_function(name):
            if self.device.type == "cuda":
                stream = torch.cuda.current_stream(self.device)
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record(stream)
                try:
                    yield
                finally:
                    end.record(stream)
                    self._pending.append((name, start, end))
            else:
                t0 = time.perf_counter()
                try:
                    yield
                finally:
                    self._seconds[name] += time.perf_counter() - t0

    def as_dict(self) -> dict[str, float]:
        if self._pending:
            torch.cuda.synchronize(self.device)
            for name, start, end in self._pending:
                self._seconds[name] += start.elapsed_time(end) / 1000.0  # ms -> s
            self._pending.clear()
        return dict(self._seconds)

    @property
    def total(self) -> float:
        return sum(self.as_dict().values())


@dataclass
class Timer:
    """Filled in when the `wall_timer` block exits."""

    seconds: float = float("nan")


@contextmanager
def wall_timer(device="cpu"):
    """Elapsed wall time of the block, including all device work it queued."""
    device = _device(device)
    cuda = device.type == "cuda"
    timer = Timer()
    if cuda:
        # Work queued before the block must not be billed to it.
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    try:
        yield timer
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        timer.seconds = time.perf_counter() - t0


class Stopwatch:
    """Seconds since it was started, device work queued before each reading included: for
    code that needs several readings of one clock (time to first audio, a load with steps)."""

    def __init__(self, device="cpu"):
        self.device = _device(device)
        self._sync()
        self._t0 = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def elapsed(self) -> float:
        self._sync()
        return time.perf_counter() - self._t0
