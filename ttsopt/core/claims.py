"""Claims as data: which metric a claim is about, in which direction, and by how much.

A claim is judged on its own metric: a cold-start claim on the first call after load, a memory
claim on a memory metric, a claim about stopping earlier on the time to a natural stop. Each
variant declares its claims; the runner writes them into the records, so a report built from
stored records needs no variant code.

Ratios are always variant / baseline of a lower-is-better metric: a claimed "25-40% faster" is
the ratio range 0.60-0.75 (read as 25-40% less time, the reading most favourable to the claim).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    kind: str                  # "time" or "memory": which verdict words apply
    phase: str                 # the records it is read from (vocab.Phase)
    columns: dict              # device type ("cpu", "cuda") -> record column
    natural_stop: bool = False  # meaningful only when the model stops by itself (real weights)
    design: str | None = None   # a design it needs (cold start needs fresh processes), else None

    def column(self, device_type: str) -> str | None:
        return self.columns.get(device_type)


METRICS = {m.name: m for m in (
    Metric("rtf", "RTF (synthesis time per second of audio)", "time", "trial", {"cpu": "rtf", "cuda": "rtf"}),
    Metric("t3_decode", "T3 decode seconds", "time", "trial",
           {"cpu": "stage_t3_decode", "cuda": "stage_t3_decode"}),
    Metric("s3gen_flow", "S3Gen flow seconds", "time", "trial",
           {"cpu": "stage_s3gen_flow", "cuda": "stage_s3gen_flow"}),
    Metric("vocoder", "vocoder seconds", "time", "trial",
           {"cpu": "stage_vocoder", "cuda": "stage_vocoder"}),
    Metric("cold_start", "first call after load, seconds", "time", "cold",
           {"cpu": "wall_s", "cuda": "wall_s"}, design="cross-process"),
    Metric("time_to_stop", "seconds to a natural stop", "time", "trial",
           {"cpu": "wall_s", "cuda": "wall_s"}, natural_stop=True),
    Metric("resident_memory", "resident after load, MiB", "memory", "load",
           {"cpu": "mem_rss_resident_mb", "cuda": "mem_cuda_resident_mb"}),
    Metric("synthesis_peak_memory", "peak above resident during synthesis, MiB", "memory", "trial",
           {"cpu": "mem_rss_synth_peak_mb", "cuda": "mem_cuda_synth_peak_mb"}),
    Metric("reserved_memory", "allocator reserve after synthesis, MiB", "memory", "trial",
           {"cuda": "mem_cuda_reserved_mb"}),
)}


@dataclass(frozen=True)
class Claim:
    """What an optimization is claimed to do to one metric. LOW and HIGH bound the claimed
    ratio variant / baseline; None when the claim states no number. UNIT "MiB" makes them an
    absolute change instead (a claimed "400 MB less" is low = high = -400)."""
    metric: str
    text: str
    low: float | None = None
    high: float | None = None
    unit: str = "ratio"
    source: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r} in claim {self.text!r}: "
                             f"expected one of {', '.join(METRICS)}")

    @property
    def point(self) -> bool:
        return self.low is not None and self.low == self.high

    def ratio_range(self, baseline_value: float | None = None) -> tuple[float, float] | None:
        """The claimed ratio range; an absolute claim needs the baseline's measured value."""
        if self.low is None:
            return None
        if self.unit == "ratio":
            return self.low, self.high
        if not baseline_value:
            return None
        return 1 + self.low / baseline_value, 1 + self.high / baseline_value


def less(low_pct: float, high_pct: float | None = None) -> tuple[float, float]:
    """'LOW-HIGH% faster / less' as a ratio range."""
    high_pct = low_pct if high_pct is None else high_pct
    return round(1 - max(low_pct, high_pct) / 100, 6), round(1 - min(low_pct, high_pct) / 100, 6)


def dumps(claims) -> str:
    return json.dumps([asdict(c) for c in claims], sort_keys=True)


def loads(text) -> list[Claim]:
    if not isinstance(text, str) or not text:
        return []
    return [Claim(**c) for c in json.loads(text)]
