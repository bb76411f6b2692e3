"""Is the machine quiet enough to time anything?

Two processes that each use every core make OpenMP threads spin against each other, and a
synthesis can take many times its normal time. Before and after each process of a run the
runner records the load average and the other processes using a CPU; the suite warns before
it starts on a busy machine (and `--wait-quiet` waits), and the report flags runs measured
under load. Our own process tree (the suite, its kernels and their parents) is not counted.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import psutil

# Other processes together using more than this share of one core are "busy": a build, a test
# run or a second benchmark; editors and shells idle far below it.
BUSY_CPU_PERCENT = 25.0
SAMPLE_S = 0.5


@dataclass
class MachineLoad:
    load1: float
    cpus: int
    others: list[dict] = field(default_factory=list)  # {"pid", "name", "cpu_percent"}, busiest first

    @property
    def other_cpu_percent(self) -> float:
        return sum(p["cpu_percent"] for p in self.others)

    @property
    def busy(self) -> bool:
        return self.other_cpu_percent > BUSY_CPU_PERCENT

    def describe(self) -> str:
        top = ", ".join(f"{p['name']} (pid {p['pid']}, {p['cpu_percent']:.0f}%)" for p in self.others[:3])
        return (f"load average {self.load1:.2f} on {self.cpus} CPUs; other processes use "
                f"{self.other_cpu_percent:.0f}% of a CPU" + (f": {top}" if top else ""))

    def others_json(self) -> str:
        return json.dumps(self.others[:5], sort_keys=True)


def _own_tree() -> set[int]:
    me = psutil.Process()
    pids = {me.pid} | {p.pid for p in me.parents()} | {p.pid for p in me.children(recursive=True)}
    for parent in me.parents():  # a kernel's siblings: the suite's other helpers
        if parent.name().startswith(("python", "papermill", "ttsopt", "make", "pytest")):
            pids |= {p.pid for p in parent.children(recursive=True)}
    return pids


def snapshot(sample_s: float = SAMPLE_S) -> MachineLoad:
    """The load average, and every other process's CPU use over SAMPLE_S seconds."""
    own = _own_tree()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid not in own]
    for p in procs:
        try:
            p.cpu_percent(None)  # the first call starts the interval
        except psutil.Error:
            pass
    time.sleep(sample_s)
    others = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 5.0:
            others.append({"pid": p.pid, "name": p.info["name"] or "?", "cpu_percent": round(pct, 1)})
    others.sort(key=lambda p: -p["cpu_percent"])
    return MachineLoad(os.getloadavg()[0], os.cpu_count() or 1, others)


def wait_quiet(timeout_s: float, say=print, poll_s: float = 10.0) -> MachineLoad:
    """Wait until no other process is busy (checked every POLL_S), at most TIMEOUT_S seconds."""
    deadline = time.monotonic() + timeout_s
    load = snapshot()
    while load.busy and time.monotonic() < deadline:
        say(f"waiting for a quiet machine: {load.describe()}")
        time.sleep(poll_s)
        load = snapshot()
    return load
