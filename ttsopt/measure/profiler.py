"""Where the time goes: a torch.profiler pass, separate from the measured trials.

Profiling slows every operator down, so no timing in a verdict ever comes from here. The
pass runs after a run's trials, on one prompt: `wait` steps ignored, `warmup` steps traced
and thrown away (the profiler's own start-up cost lands there), `active` steps kept. Stages
show up as `record_function` labels (`ttsopt.timing.StageTimes` sets them), so the trace
opens in Perfetto or chrome://tracing with the pipeline's stages on the timeline.
"""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, schedule

from ..core.vocab import STAGES

WAIT, WARMUP, ACTIVE = 1, 1, 1
# Above this a Chrome trace is gzipped; Perfetto and chrome://tracing open .json.gz directly.
GZIP_ABOVE_BYTES = 8 * 2**20
TOP_N = 15


@dataclass
class Profiled:
    operators: pd.DataFrame   # one row per operator, most expensive first
    stages: pd.DataFrame      # one row per pipeline stage label
    trace_path: Path | None


def _activities(device: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def _quiet_gpu_probe(device: torch.device) -> None:
    """Profiling on the CPU with torch's CUDA build makes kineto probe for a GPU and print
    "gpuGetDeviceCount failed" on stderr, which reads like a fault of the run. Kineto takes its
    log level from KINETO_LOG_LEVEL when it starts (5: nothing below fatal); a GPU run, or a level
    the user set, is left as it is."""
    if device.type != "cuda" and not torch.cuda.is_available():
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")


def _table(averages, device: torch.device) -> pd.DataFrame:
    cuda = device.type == "cuda"
    rows = []
    for e in averages:
        row = {"name": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
               "cpu_total_ms": e.cpu_time_total / 1e3}
        if cuda:
            row["self_device_ms"] = e.self_device_time_total / 1e3
            row["device_total_ms"] = e.device_time_total / 1e3
        rows.append(row)
    sort = "self_device_ms" if cuda else "self_cpu_ms"
    return pd.DataFrame(rows).sort_values(sort, ascending=False, ignore_index=True)


def operators_of(call, device: torch.device) -> pd.DataFrame:
    """CALL run once under torch.profiler: one row per operator, most expensive first."""
    _quiet_gpu_probe(device)
    with profile(activities=_activities(device), acc_events=True) as prof:  # acc_events: no per-cycle warning
        call()
    return _table(prof.key_averages(), device)


# A decode step's operators by what they do. Products with the weights: the linear layers and the
# speech head, in any kernel (float products, dynamic int8, weight-only int8, torch's int4 and
# ttsopt's native int4, `ttsopt_t3::int4_linear`). Attention
# over the cache: torch's attention kernels, or the batched products of an eager attention (a
# step's weights never go through a batched product). Everything else: norms, rotary, the cache
# write, elementwise glue, sampling, the interpreter.
WEIGHT_PRODUCTS = ("mm", "addmm", "linear_dynamic", "_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu", "_int_mm",
                   "int4_linear")
STEP_PARTS = ("products", "attention", "rest")


def step_part(name: str) -> str:
    """Which of STEP_PARTS the operator NAME (as the profiler keys it, `aten::mm`) belongs to."""
    op = name.rsplit("::", 1)[-1]
    if op in WEIGHT_PRODUCTS:
        return "products"
    return "attention" if "attention" in op or op in ("bmm", "baddbmm") else "rest"


def step_parts(table: pd.DataFrame) -> dict[str, float]:
    """Self CPU milliseconds of an `operators_of` TABLE gathered into STEP_PARTS."""
    parts = table["name"].map(step_part)
    return {part: float(table.loc[parts == part, "self_cpu_ms"].sum()) for part in STEP_PARTS}


def save_trace(prof, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    if path.stat().st_size > GZIP_ABOVE_BYTES:
        gz = path.with_suffix(path.suffix + ".gz")
        with open(path, "rb") as src, gzip.open(gz, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(path)
        return gz
    return path


def profile_synthesis(pipeline, text: str, *, seed: int = 0, n_tokens: int | None = None,
                      trace_path=None, wait: int = WAIT, warmup: int = WARMUP, active: int = ACTIVE) -> Profiled:
    """Profile `wait + warmup + active` syntheses of TEXT; tables and trace cover the active ones."""
    saved: list[Path] = []

    def ready(prof):
        if trace_path is not None:
            saved.append(save_trace(prof, trace_path))

    cycle = schedule(wait=wait, warmup=warmup, active=active, repeat=1)
    _quiet_gpu_probe(pipeline.device)
    with profile(activities=_activities(pipeline.device), schedule=cycle,
                 on_trace_ready=ready, acc_events=True) as prof:  # one cycle; silences the per-cycle warning
        for _ in range(wait + warmup + active):
            pipeline.synthesize(text, seed=seed, n_tokens=n_tokens)
            prof.step()
    table = _table(prof.key_averages(), pipeline.device)
    is_stage = table["name"].isin(STAGES)
    stages = table[is_stage].set_index("name").reindex([s for s in STAGES if s in set(table["name"])]).reset_index()
    operators = table[~is_stage & ~table["name"].str.startswith("ProfilerStep")].head(TOP_N).reset_index(drop=True)
    return Profiled(operators, stages, saved[0] if saved else None)


def cost_by_length(pipeline, prompts: list[dict], *, seed: int = 0, tokens_for=None) -> pd.DataFrame:
    """One synthesis per prompt: characters, tokens, wall time, RTF and stage seconds, to see how
    cost grows with the text. TOKENS_FOR(text) forces a length (random weights need one)."""
    rows = []
    for p in prompts:
        out = pipeline.synthesize(p["text"], seed=seed, n_tokens=tokens_for(p["text"]) if tokens_for else None)
        rows.append({"prompt_id": p["id"], "chars": len(p["text"]), "n_tokens": out.n_tokens,
                     "audio_s": out.audio_s, "wall_s": out.wall_s, "rtf": out.rtf,
                     **{f"stage_{k}": v for k, v in out.stages.items()}})
    return pd.DataFrame(rows)
