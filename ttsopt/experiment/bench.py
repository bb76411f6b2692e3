"""`ttsopt bench`: the upstream-equivalent baseline and a fast combination, side by side in one
process, interleaved — the in-process design of a suite's runs, on one prompt — plus what only
a live pipeline can show: T3's memory floor, the flow's compute floor, streaming's first audio, a batch's throughput.

Every trial is a `TrialRecord` in a results store (the run `bench`), so a saved bench is read
like any suite's records; the printed table is computed from those records, each gain with
its interval over the pairs. The first pair's clips are saved beside them and scored for
quality last, after everything is timed (`bench_quality`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

from ..core import stats
from ..core.errors import UserError
from ..core.records import load
from ..core.vocab import Design, Phase, Side, Stage, Verdict
from ..engine.attention import BF16_PRODUCTS, PRODUCTS, flow_attention
from ..engine.batch import synthesize_batch
from ..engine.pipeline import Sampling
from ..engine.stream import FIRST_PARTS
from ..engine.t3.fast import FastT3
from ..engine.t3.turbo import UpstreamTurboT3
from ..measure import env as env_mod
from ..measure import fidelity, profiler, roofline
from ..measure.env import bf16_units
from ..variants import BASELINE
from ..variants.fast import flow_convolutions, flow_precision
from . import bench_memory, bench_quality, profiles
from .runner import RunConfig, _Run, _stream_trial, measure_pairs

CPU_COMBO = "fast-t3+cpu-int8-t3+cpu-int8-head+fast-s3gen"  # and the vocoder's (`cpu_vocoder`)
VOCODER = "the vocoder's convolutions as channels-last 2-D ones"


def cpu_vocoder(flags: set[str]) -> tuple[str, str]:
    """What a CPU's combination adds for the vocoder, and why: its convolutions as channels-last
    rows (`fast-vocoder`, lossless), and in bfloat16 (`bf16-vocoder`, a fidelity trade-off) where
    the CPU's FLAGS hold bfloat16 units (BF16_UNITS): there the rows were measured faster (the
    README gives the figures); without them bfloat16 would be emulated, so the rows stay float32."""
    units = bf16_units(flags)
    if units:
        return "fast-vocoder+bf16-vocoder", f"{VOCODER}, in bfloat16 (this CPU has {', '.join(units)})"
    return "fast-vocoder", VOCODER


def best_combo(device_type: str, flags: set[str], model: str = "original") -> tuple[str, str]:
    """The fast combination for a device, CPU FLAGS and model, and why. `fast-s3gen` picks the flow
    estimator's precision from the same flags and the model (`variants.fast.flow_precision`):
    bfloat16 where it is native and the fastest, int8 linear layers elsewhere; its attention
    kernel (`engine.attention.flow_attention`) and its convolutions' dtype (`flow_convolutions`).
    A CPU's combination adds the vocoder's (`cpu_vocoder`), measured on CPUs only. On CUDA nothing
    is built for Turbo yet."""
    precision, why = flow_precision(device_type, flags, model)
    kind, reason = flow_attention(device_type, flags, precision)
    convolutions = flow_convolutions(precision, kind)
    flow = (f"the flow estimator in {precision}; {why}"
            + (f"; its attention as three {kind} ({reason})" if kind in (PRODUCTS, BF16_PRODUCTS) else "")
            + (f"; its convolutions in {str(convolutions).replace('torch.', '')}" if convolutions else ""))
    vocoder, vocoder_why = cpu_vocoder(flags)
    cpu_combo = f"{CPU_COMBO}+{vocoder}"
    if model == "turbo":
        if device_type == "cuda":
            raise UserError("no fast combination is built for turbo on CUDA yet; name one with --combo")
        return cpu_combo, (f"turbo on a CPU: GPT-2 over a static KV cache with int8 linears and speech head; {flow} "
                           f"(Turbo's flow takes 2 steps); {vocoder_why}")
    if model == "multilingual" and device_type == "cuda":  # its analyzer reads every step: no T3 graph
        return "fast-s3gen", f"multilingual on CUDA: CUDA graphs and {flow}"
    if model == "multilingual":
        return cpu_combo, (f"multilingual on a CPU: T3 over a static KV cache with int8 linears and speech head, "
                           f"upstream's alignment analyzer fed from the step, {flow}; {vocoder_why}")
    if device_type == "cuda":
        return "fast-t3+fast-s3gen", f"CUDA: the T3 step and the flow as CUDA graphs, {flow}"
    return cpu_combo, f"a CPU: T3 over a static KV cache with int8 linears and speech head, {flow}; {vocoder_why}"


RUN_ID = "bench"


@dataclass
class Bench:
    records: pd.DataFrame
    floor: dict
    evidence: dict
    combo: str
    why: str  # why this combination: the user's choice, or the device's default and its reason
    quality: dict = field(default_factory=dict)  # bench_quality.measure: both sides' first clips
    flow_floor: dict = field(default_factory=dict)  # flow_floor: the flow's arithmetic against this device's rates
    first_audio_floor: dict = field(default_factory=dict)  # first_audio_floor: a stream's first audio at the floors


def run(out_dir, *, source: str, device: str, combo: str | None, text: str, tokens: int, trials: int, seed: int,
        stream: bool, batch: int, model: str = "original", language: str = "en", memory: bool = True,
        first_chunk: int | None = None, progress=None) -> Bench:
    """PROGRESS(message) is told as each of `steps(...)` starts; FIRST_CHUNK: the streams' first chunk
    in tokens (default: as every chunk)."""
    say = progress or (lambda message: None)
    from ..engine.sources import resolve_device
    from ..measure.env import cpu_flags
    why = "chosen with --combo"
    if not combo:
        combo, why = best_combo(resolve_device(device).type, cpu_flags(), model)
    if batch and (model == "multilingual" or "alignment-analyzer" in combo.split("+")):
        # refused before anything loads, as `engine.batch.synthesize_batch` would refuse after the timings
        raise UserError("--batch: this T3 runs upstream's alignment analyzer, which follows one synthesis at a "
                        "time, so a T3 batch would speak without it")
    # The warm-up speaks as the first pair speaks (warmup_tokens None: `tokens` with random weights, the
    # natural stop of the first pair's seed with real ones): oneDNN builds its kernels per shape, so a
    # shorter one would leave a first call at a new length to the first pair alone. That call's cost is
    # read apart, in each side's own fresh process (the `load` and `cold` rows).
    profile = profiles.Profile("bench", None, tuple(range(seed, seed + trials)), trials=1, rounds=0, cross_trials=0,
                               warmup_tokens=None, tokens=tokens, time_limit_s=0, fidelity_prompts=1)
    cfg = RunConfig(out_dir=str(out_dir), variant=combo, source=source, model=model, device=device, run_id=RUN_ID,
                    profile="smoke", save_audio=True)  # the first pair's clips, for quality
    run_ = _Run(cfg, Design.IN_PROCESS, profile)
    run_.store.write_env(env_mod.capture(source, model))  # the machine the numbers come from, with the records
    say("the device's read bandwidth, before loading")
    before = roofline.read_bandwidths(resolve_device(device))  # again after the timings: the floor says if they differ
    say(f"loading both sides, warming up, {trials} interleaved pair(s)")
    base, fast, applied = measure_pairs(run_, [{"id": "bench", "category": "bench", "text": text,
                                                "language": language}])
    say("T3's memory floor")
    floor = memory_floor(base, fast, run_, text, tokens, before)
    say("where each side's T3 step goes (profiled)")
    step_split(base, fast, floor, text, tokens)
    say("the flow's compute floor")
    flow = flow_floor(base, fast, run_, tokens)
    first = {}
    if stream:
        _stream(run_, base, fast, text, seed, tokens, trials, say, first_chunk)
        first = first_audio_floor(fast, run_, floor, flow)
    if batch:
        _batch(run_, fast, text, seed, tokens, batch, trials, say)
    if memory:  # each side alone in a fresh process, after every timing of this one
        _own_processes(out_dir, source, model, device, combo, text, language,
                       tokens if base.model.random_weights else None, seed, trials, say)
    # Last, after every timing; the recogniser is English, so other languages get no word error rate.
    say("scoring quality")
    scored = bench_quality.measure(out_dir, load(out_dir), RUN_ID, base, text if language == "en" else None)
    return Bench(load(out_dir), floor, applied.evidence(fast), combo, why, scored, flow, first)


def steps(trials: int, stream: bool, batch: int, memory: bool) -> int:
    """How many steps `run` reports to its progress callback."""
    return 6 + (trials + 1 if stream else 0) + (trials + 1 if batch else 0) + (2 * trials if memory else 0)


def _own_processes(out_dir, source: str, model: str, device: str, combo: str, text: str, language: str,
                   tokens: int | None, seed: int, trials: int, say) -> None:
    """Each side alone in a fresh process (`bench_memory`), once per pair, in the pairs' alternating
    order: a load and a first synthesis vary from one process to the next as much as a trial does."""
    sides = ((Side.BASELINE, BASELINE), (Side.VARIANT, combo))
    for pair in range(trials):
        for side, spec in sides if pair % 2 == 0 else sides[::-1]:
            say(f"the {side} side alone in a fresh process, pair {pair + 1}/{trials}")
            bench_memory.measure(bench_memory.Job(str(out_dir), RUN_ID, source, model, device, spec, side, text,
                                                  language, tokens, seed, pair))


def _stream(run_: _Run, base, fast, text: str, seed: int, tokens: int, trials: int, say,
            first_chunk: int | None = None) -> None:
    """Both sides streamed once per pair, in the pairs' alternating order: streaming's own replicates.
    Each side first streams once untimed (a `warmup` record): a stream's chunks are shorter than the
    whole synthesis the pairs' warm-up spoke, and a first call at a new length builds its kernels."""
    say("streaming both sides once, untimed (warm-up at the chunks' lengths)")
    for side, pipeline in ((Side.BASELINE, base), (Side.VARIANT, fast)):
        run_.write(_stream_trial(run_, side, pipeline, "bench", text, seed, tokens, None, first_chunk, Phase.WARMUP))
    for pair in range(trials):
        say(f"streaming both sides, pair {pair + 1}/{trials}")
        sides = ((Side.BASELINE, base), (Side.VARIANT, fast))
        for side, pipeline in sides if pair % 2 == 0 else sides[::-1]:
            run_.write(_stream_trial(run_, side, pipeline, "bench", text, seed + pair, tokens, pair, first_chunk))


def _batch(run_: _Run, pipeline, text: str, seed: int, tokens: int, n: int, trials: int, say) -> None:
    """Per pair, the fast side's N prompts one at a time and in one T3 batch, in alternating order:
    what batching gains over the path it replaces, with replicates of its own. In the batch rows
    side `baseline` is one at a time and side `variant` the batch (`BATCH_SIDES`); the batch's
    record has its token match against one at a time, the mean over prompts (dynamic int8 linears
    quantize a product's input with one scale over all its rows, so a batch's other prompts can
    move them)."""
    seeds = [seed + i for i in range(n)]
    batched = partial(_in_one_batch, pipeline, text, seeds, tokens)
    ways = ((Side.BASELINE, partial(_one_at_a_time, pipeline, text, seeds, tokens)), (Side.VARIANT, batched))
    say(f"a batch of {n}, once untimed (warm-up at the batch's shapes)")
    warm = batched()  # one at a time speaks at the pairs' shapes, which their warm-up built
    run_.write(run_.record(Phase.WARMUP, Side.VARIANT, prompt_id="bench", seed=seed, wall_s=warm["wall_s"],
                           audio_s=warm["audio_s"], forced_tokens=tokens, extra={"prompts": n, "t3_s": warm["t3_s"]}))
    for pair in range(trials):
        say(f"a batch of {n} against one at a time, pair {pair + 1}/{trials}")
        done = {side: way() for side, way in (ways if pair % 2 == 0 else ways[::-1])}
        match = float(np.mean([fidelity.token_match(one, batched) for one, batched
                               in zip(done[Side.BASELINE]["tokens"], done[Side.VARIANT]["tokens"], strict=True)]))
        for side, out in done.items():
            extra = {"prompts": n, "t3_s": out["t3_s"], "audio_s_per_wall_s": out["audio_s"] / out["wall_s"],
                     **({"token_match": match} if side == Side.VARIANT else {})}
            run_.write(run_.record(Phase.BATCH, side, prompt_id="bench", seed=seed, trial=pair, pair=pair,
                                   wall_s=out["wall_s"], audio_s=out["audio_s"], forced_tokens=tokens, extra=extra))


BATCH_SIDES = {Side.BASELINE: "the fast side, one prompt at a time", Side.VARIANT: "the fast side, one T3 batch"}
_T3_PART = (Stage.TEXT_TO_TOKENS, Stage.CONDITIONING, Stage.T3_PREFILL, Stage.T3_DECODE)


def _one_at_a_time(pipeline, text: str, seeds: list[int], tokens: int) -> dict:
    outs = [pipeline.synthesize(text, seed=s, n_tokens=tokens) for s in seeds]
    return {"wall_s": sum(o.wall_s for o in outs), "audio_s": sum(o.audio_s for o in outs),
            "t3_s": sum(o.stages.get(str(stage), 0.0) for o in outs for stage in _T3_PART),
            "tokens": [o.tokens for o in outs]}


def _in_one_batch(pipeline, text: str, seeds: list[int], tokens: int) -> dict:
    out = synthesize_batch(pipeline, [text] * len(seeds), seeds, tokens)
    return {"wall_s": out.wall_s, "audio_s": out.audio_s, "t3_s": out.t3_s,
            "tokens": [r.tokens for r in out.results]}


def memory_floor(base, fast, run_: _Run, text: str, n_tokens: int, before: list[float]) -> dict:
    """Bytes each side's T3 step must read, this device's read bandwidth, and what follows.
    BEFORE: the bandwidth probe's readings before loading; it runs again here, after the timings,
    and the floor takes the best of both."""
    with torch.inference_mode():  # prefill length: conditioning + text + start-of-speech
        prefill_len = _prefill_length(base, text)
    after = roofline.read_bandwidths(base.device)
    bandwidth = max(before + after)
    df = load(run_.cfg.out_dir)
    trials = df[(df["phase"] == Phase.TRIAL) & (df["run_id"] == RUN_ID)]
    out = {"prefill_positions": prefill_len, "read_bandwidth_gb_s": bandwidth / 1e9,
           "read_bandwidth_before_gb_s": [r / 1e9 for r in before],
           "read_bandwidth_after_gb_s": [r / 1e9 for r in after],
           "bandwidth_probe": bandwidth_probe(before, after, base.device)}
    for side, p in ((Side.BASELINE, base), (Side.VARIANT, fast)):
        step_s = 1 / float(trials.loc[trials["side"] == side, "tokens_per_s"].median())
        nbytes = roofline.step_bytes(p.model.t3, prefill_len, n_tokens, getattr(p.t3, "kv_dtype", None))
        out[str(side)] = {"step_mb": nbytes / 2**20, "weight_mb": roofline.weight_bytes(p.model.t3) / 2**20,
                          "step_ms": step_s * 1e3, "achieved_gb_s": nbytes / step_s / 1e9,
                          "floor_ms": nbytes / bandwidth * 1e3}
    out["t3_gain_ceiling"] = out["baseline"]["step_ms"] / out["variant"]["floor_ms"]
    return out


def step_split(base, fast, floor: dict, text: str, n_tokens: int) -> None:
    """Adds to FLOOR (`memory_floor`'s) where each side's step went (`step_profile`), the rate its
    products read the weights at, and the most a step built from the fast side's kernels could gain
    over the measured baseline. CPU only: a CUDA profile times kernels, not these operators."""
    if base.device.type != "cpu":
        return
    for side, p in ((Side.BASELINE, base), (Side.VARIANT, fast)):
        row = floor[str(side)]
        row.update(step_profile(p, text, n_tokens))
        row["products_gb_s"] = row["weight_mb"] * 2**20 / row["products_ms"] / 1e6
    kernels_ms = floor["variant"]["products_ms"] + floor["variant"]["attention_ms"]
    floor["t3_kernel_gain_ceiling"] = floor["baseline"]["step_ms"] / kernels_ms


def step_profile(pipeline, text: str, n_tokens: int) -> dict:
    """Where PIPELINE's decode step goes: one more decode of N_TOKENS forced tokens after a prefill,
    under torch.profiler, after the timings (no timing comes from it). Per step, the self time of
    the products with the weights and of the attention over the cache (`profiler.step_parts`): the
    kernels that read the step's bytes, at the rates they ran. The profiler slows small operators
    most, so these two are read against the measured step and the rest is what is left of it."""
    s = pipeline.sampling
    with torch.inference_mode():
        conds, tokens = pipeline.conditioning(), pipeline.text_to_tokens(text)
        torch.manual_seed(0)
        state = pipeline.t3.prefill(conds.t3, tokens, s)
        table = profiler.operators_of(partial(pipeline.t3.decode, state, s, n_tokens), pipeline.device)
    parts = profiler.step_parts(table)
    return {"profiled_steps": n_tokens, "products_ms": parts["products"] / n_tokens,
            "attention_ms": parts["attention"] / n_tokens}


PROBE_DRIFT = 0.2  # medians before and after the timings further apart than this: the floor says so


def bandwidth_probe(before: list[float], after: list[float], device) -> str:
    """How the read bandwidth was probed, its readings, and whether the device read memory at
    another speed before loading than after the timings (page sizes and the machine's neighbours
    move it), which makes the floor as uncertain as that."""
    def spread(rates):
        return f"{min(rates) / 1e9:.1f}–{max(rates) / 1e9:.1f} GB/s, median {float(np.median(rates)) / 1e9:.1f}"
    text = (f"the best of {len(before) + len(after)} sums over a 256 MiB float32 tensor on {device}: "
            f"{len(before)} before loading either side, {spread(before)}; "
            f"{len(after)} after the two sides' timings, {spread(after)}")
    low, high = sorted((float(np.median(before)), float(np.median(after))))
    if high > low * (1 + PROBE_DRIFT):
        text += (f". The two medians differ by {high / low - 1:.0%}: the device read memory at another speed "
                 "between them, and the floor moves with it")
    return text


def flow_floor(base, fast, run_: _Run, n_tokens: int) -> dict:
    """The arithmetic each side's flow call does on N_TOKENS tokens (the voice's prompt in front),
    split by the kind each operator ran in, the rates this device multiplies at in those kinds, and
    what follows: each side's floor (each kind's share at its rate), the fraction of it achieved, and
    the most any fast flow doing this arithmetic in these kinds could gain. Counted after the pairs,
    between timings; the counting calls are not timed."""
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (n_tokens,), generator=torch.Generator().manual_seed(0))
    df = load(run_.cfg.out_dir)
    trials = df[(df["phase"] == Phase.TRIAL) & (df["run_id"] == RUN_ID)]
    counted = {}
    for side, p in ((Side.BASELINE, base), (Side.VARIANT, fast)):
        conds = p.conditioning()
        with torch.inference_mode():
            torch.manual_seed(0)
            counted[side] = roofline.count_flops(partial(p.flow, tokens.to(p.device), conds))
    kinds = [k for k in roofline.RATE_KINDS if any(k in c.by_precision for c in counted.values())]
    probed = {kind: roofline.multiply_rates(base.device, kind) for kind in kinds}
    rates = {k: max(r) / 1e9 for k, r in probed.items()}
    out = {"tokens": n_tokens, "rates_gflop_s": rates,
           "rate_probe": (f"the best of {len(next(iter(probed.values())))} products of two 1024 x 1024 matrices per "
                          f"kind on {base.device} (int8-dynamic: a dynamic-int8 linear layer of that size), after "
                          "the pairs' timings; all: " + ", ".join(f"{k} {min(r) / 1e9:.0f}–{max(r) / 1e9:.0f}"
                                                            for k, r in probed.items()) + " GFLOP/s")}
    for side in (Side.BASELINE, Side.VARIANT):
        flops = counted[side]
        by_precision = {k: n / 1e9 for k, n in flops.by_precision.items()}
        flow_s = float(pd.to_numeric(trials.loc[trials["side"] == side, f"stage_{Stage.S3GEN_FLOW}"]).median())
        out[str(side)] = {"gflop": flops.total / 1e9, "by_op_gflop": {op: n / 1e9 for op, n in flops.by_op.items()},
                          "by_kind_gflop": {k: n / 1e9 for k, n in roofline.by_kind(flops.by_op).items()},
                          "by_precision_gflop": by_precision, "flow_s": flow_s,
                          "achieved_gflop_s": flops.total / flow_s / 1e9,
                          "floor_s": roofline.floor_seconds(by_precision, rates)}
    out["flow_gain_ceiling"] = out["baseline"]["flow_s"] / out["variant"]["floor_s"]
    return out


# engine.stream's parts of the first audio, as the table's rows and the printed floor name them
FIRST_AUDIO_PARTS = dict(zip(FIRST_PARTS, ("T3 prefill", "the first chunk's decode", "its flow, prompt in front",
                                           "its vocoder"), strict=True))


def first_audio_floor(fast, run_: _Run, floor: dict, flow: dict) -> dict:
    """The fast side's first audio of a stream (medians over its streams) against the floors of the
    two parts that have one: the first chunk's decode, its tokens at T3's step floor (`memory_floor`,
    at the utterance's mean cache length, a little above the first chunk's), and its flow, the
    arithmetic of one flow call on that many tokens with the voice's prompt in front, each kind's
    share at the rate the flow floor took for it (`flow_floor`). T3's prefill and the vocoder count
    as measured. The sum is the soonest this device could start the audio doing this arithmetic and
    reading these bytes; {} when nothing was streamed. Counted after the streams, between timings;
    the counting call is not timed."""
    df = load(run_.cfg.out_dir)
    streams = df[(df["phase"] == Phase.STREAM) & (df["run_id"] == RUN_ID) & (df["side"] == Side.VARIANT)]
    if streams.empty:
        return {}
    n = int(streams["x_first_chunk_tokens"].iloc[0])
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (n,), generator=torch.Generator().manual_seed(0))
    conds = fast.conditioning()
    with torch.inference_mode():
        torch.manual_seed(0)
        flops = roofline.count_flops(partial(fast.flow, tokens.to(fast.device), conds))
    by_precision = {k: n / 1e9 for k, n in flops.by_precision.items()}

    def median(part: str) -> float:
        return float(pd.to_numeric(streams[f"x_first_{part}"]).median())

    floors = {"decode_s": n * floor["variant"]["floor_ms"] / 1e3,
              "flow_s": roofline.floor_seconds(by_precision, flow["rates_gflop_s"])}
    parts = {part: {"measured_s": median(part), "floor_s": floors.get(part)} for part in FIRST_AUDIO_PARTS}
    return {"first_chunk_tokens": n, "flow_gflop": flops.total / 1e9, "by_precision_gflop": by_precision,
            "first_audio_s": median("audio_s"), "parts": parts,
            "floor_s": sum(p["measured_s"] if p["floor_s"] is None else p["floor_s"] for p in parts.values())}


def _prefill_length(pipeline, text: str) -> int:
    """Positions before the first speech token: conditioning, text and start-of-speech."""
    if pipeline.model.name == "turbo":
        state = UpstreamTurboT3(pipeline.model.t3).prefill(pipeline.conditioning().t3, pipeline.text_to_tokens(text),
                                                          pipeline.sampling)
        return state.len_cond + state.text_len + 1
    t3 = FastT3(pipeline.model.t3, graphs=False)
    return t3.prefill(pipeline.conditioning().t3, pipeline.text_to_tokens(text), Sampling()).length


# --- the table -------------------------------------------------------------------------------------
ROWS = (  # label, column, phase, higher is better
    ("T3 tokens/s", "tokens_per_s", Phase.TRIAL, True),
    ("T3 prefill s", f"stage_{Stage.T3_PREFILL}", Phase.TRIAL, False),
    ("T3 decode s", f"stage_{Stage.T3_DECODE}", Phase.TRIAL, False),
    ("S3Gen flow s", f"stage_{Stage.S3GEN_FLOW}", Phase.TRIAL, False),
    ("vocoder s", f"stage_{Stage.VOCODER}", Phase.TRIAL, False),
    ("end-to-end wall s", "wall_s", Phase.TRIAL, False),
    ("end-to-end RTF", "rtf", Phase.TRIAL, False),
    ("stream: first audio s", "x_first_audio_s", Phase.STREAM, False),
    # Where the first audio's time goes (engine.stream.FIRST_PARTS); records before these were kept lack them.
    *((f"  of which {label} s", f"x_first_{part}", Phase.STREAM, False) for part, label in FIRST_AUDIO_PARTS.items()),
    ("stream: RTF after the first chunk", "x_rest_rtf", Phase.STREAM, False),
    ("stream: whole wall s", "wall_s", Phase.STREAM, False),
    # Both columns are the fast side (BATCH_SIDES): its prompts one at a time, then in one T3 batch.
    ("batch: audio s per wall s, one at a time vs batched", "x_audio_s_per_wall_s", Phase.BATCH, True),
    ("batch: T3 s, conditioning to last token", "x_t3_s", Phase.BATCH, False),
    ("batch: wall s", "wall_s", Phase.BATCH, False),
    ("model weights MiB (counted)", "mem_params_mb", Phase.LOAD, False),
    # Measured in a fresh process per side (`bench_memory`): one process holding both sides cannot tell them apart,
    # and there a first call also builds what the pairs' warm-up built (kernels for each shape, fused graphs).
    ("load s (own process)", "wall_s", Phase.LOAD, False),
    ("first synthesis s (own process)", "wall_s", Phase.COLD, False),
    ("resident after load MiB (own process)", "mem_rss_resident_mb", Phase.LOAD, False),
    ("first synthesis peak above resident MiB (own process)", "mem_rss_synth_peak_mb", Phase.COLD, False),
)


def table(records: pd.DataFrame) -> pd.DataFrame:
    """Median per side and the gain (baseline / fast for times, fast / baseline for throughput)
    with its interval over the pairs and the verdict it supports: the in-process pairs' for timings,
    the fresh processes' pairs (`bench_memory`) for the own-process rows. The counted weight bytes,
    one value per side, show no gain."""
    df = records[records["run_id"] == RUN_ID]
    rows = []
    for label, column, phase, higher in ROWS:
        own = column.startswith("mem_rss") or phase in (Phase.LOAD, Phase.COLD) and column == "wall_s"
        sel = df[df["phase"] == phase]
        if own:
            sel = sel[pd.to_numeric(sel["process"], errors="coerce") >= 1]
        if column not in df.columns or sel.empty:
            continue
        b = pd.to_numeric(sel.loc[sel["side"] == Side.BASELINE, column], errors="coerce").median()
        f = pd.to_numeric(sel.loc[sel["side"] == Side.VARIANT, column], errors="coerce").median()
        gain = low = high = np.nan
        n, verdict = None, ""
        if own or phase in (Phase.TRIAL, Phase.STREAM, Phase.BATCH) and not column.startswith("mem_"):
            (gain, low, high), n, verdict = _gain(sel if own else df, column, phase, higher, own)
        rows.append({"metric (median)": label, "baseline": b, "fast": f, "gain": gain, "gain 95% CI low": low,
                     "gain 95% CI high": high, "n": n, "verdict": verdict})
    out = pd.DataFrame(rows)
    out["n"] = out["n"].astype("Int64")  # pairs behind the interval; none for one-per-side rows
    return out


def _gain(df: pd.DataFrame, column: str, phase: str, higher: bool, own: bool) -> tuple[tuple, int, str]:
    """((gain, low, high), pairs, verdict) of COLUMN: over the in-process pairs, or with OWN over the
    fresh processes' pairs (each its `round`; a record from before they were paired is one pair)."""
    kind = "memory" if column.startswith("mem_") else "time"
    if own:
        df = df.assign(round=pd.to_numeric(df["round"], errors="coerce").fillna(0) if "round" in df.columns else 0)
    try:
        c = stats.compare(df, column, metric=column, kind=kind, phase=phase,
                          design=Design.CROSS_PROCESS if own else Design.IN_PROCESS)
    except ValueError:  # no pair with the value on both sides (one chunk has no rest to time)
        return (np.nan, np.nan, np.nan), 0, str(Verdict.NOT_COMPARED)
    return c.gain(higher), c.n, c.reading(higher)


def load_parts(records: pd.DataFrame) -> dict:
    """Where each side's load in its own process went, medians over those processes: reading the
    model, each variant's load-time work (`variants.Applied.seconds`), and the rest (building the
    pipeline, measuring memory); {} for records from before loads were split."""
    df = records[(records["run_id"] == RUN_ID) & (records["phase"] == Phase.LOAD)]
    if "x_variants_s" not in df.columns:
        return {}
    df = df[(pd.to_numeric(df["process"], errors="coerce") >= 1) & df["x_variants_s"].notna()]
    out = {"n": min(df["side"].value_counts().reindex([Side.BASELINE, Side.VARIANT], fill_value=0))}
    for side, rows in df.groupby("side"):
        parts = pd.DataFrame([{"reading the model": r.x_model_load_s, **json.loads(r.x_variants_s)}
                              for r in rows.itertuples()])
        parts["the rest"] = rows["wall_s"].to_numpy(float) - parts.sum(axis=1).to_numpy(float)
        out[side] = {**parts.median().to_dict(), "load": float(rows["wall_s"].median())}
    return out


def fidelity_lines(records: pd.DataFrame) -> list[str]:
    df = records[(records["run_id"] == RUN_ID) & (records["side"] == Side.VARIANT)]
    trials, probes = df[df["phase"] == Phase.TRIAL], df[df["phase"] == Phase.FIDELITY]
    lines = []
    if "fid_token_match" in trials.columns:
        lines.append(f"token match rate (same seed): {trials['fid_token_match'].mean():.4f} "
                     f"over {len(trials)} trial(s)")
    for col, label in (("fid_mel_rel_err", "mel rel. error (baseline tokens, same noise)"),
                       ("fid_vocoder_rel_err", "vocoder waveform rel. error (baseline mel, same noise)"),
                       ("fid_logit_rel_err", "T3 teacher-forced logit rel. error")):
        if col in probes.columns and probes[col].notna().any():
            lines.append(f"{label}: {probes[col].max():.3g}")
    return lines
