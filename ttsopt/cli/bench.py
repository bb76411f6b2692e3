"""`ttsopt bench`: baseline and the fast path side by side in one process, one table of gains with
their intervals, the fidelity of the fast side, T3's memory floor and the flow's compute floor,
optionally streaming and batching, and the quality of both sides' first clips (with random weights only the fast side's
distance to the baseline's). `--save DIR` keeps the printed text, the records of every trial, the
floors (bench.floors.json), the first pair's clips, their quality (bench.quality.json) and a figure."""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from .options import MAX_TOKENS, add_language, add_model, check_language, count, positive, tokens
from .progress import steps


def register(sub) -> None:
    p = sub.add_parser("bench", help="baseline vs the fast path, side by side, one table of gains")
    add_model(p, default_source="synthetic")
    add_language(p)
    p.add_argument("--tokens", type=tokens, default=None,
                   help=f"speech tokens per synthesis, both sides, 1 to {MAX_TOKENS} (default: scaled with the "
                        "text as the full profile scales it, 1.2 per character)")
    p.add_argument("--prompt", default=None, help="text to speak (default: medium-01 of data/prompts/prompts.csv)")
    p.add_argument("--trials", type=positive, default=2, help="interleaved pairs (default: 2)")
    p.add_argument("--seed", type=count, default=0, help="pair t uses seed SEED + t on both sides")
    p.add_argument("--combo", default=None,
                   help="variant spec (default per device and model, printed with the reason: on a CPU "
                        "fast-t3+cpu-int8-t3+cpu-int8-head+fast-s3gen+fast-vocoder, whose flow estimator goes "
                        "bfloat16 with amx_bf16 (and for turbo with avx512_bf16), int8 linears otherwise (with "
                        "avx512_bf16 its attention in bfloat16), plus bf16-vocoder with either unit; "
                        "fast-t3+fast-s3gen on CUDA; the CPU's for turbo (none yet on CUDA) and for "
                        "multilingual (fast-s3gen alone on CUDA); cpu-int4-t3 in place of cpu-int8-t3 reads half "
                        "the T3 weight bytes, lossier, on ttsopt's int4 kernel where the CPU has avx512_vnni or avx2)")
    p.add_argument("--stream", action="store_true",
                   help="also stream both sides once per pair, after the pairs (first audio, RTF of the rest)")
    p.add_argument("--first-chunk", type=positive, default=None, metavar="N",
                   help="speech tokens in a stream's first chunk, both sides (default: 25, as every chunk): fewer "
                        "start the audio sooner, at one more flow call")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip loading each side once more in a fresh process of its own to measure its memory "
                        "and the seconds its load and first synthesis take")
    p.add_argument("--batch", type=count, default=0, help="also time N copies of the prompt in one T3 batch")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="also keep DIR/bench.txt (what is printed), the records (DIR/bench.jsonl), the floors "
                        "(DIR/bench.floors.json), the first pair's "
                        "clips (DIR/audio/bench/), their quality (DIR/bench.quality.json) and DIR/bench.png")
    p.set_defaults(func=run)


def default_prompt() -> str:
    from ..experiment import profiles
    return next(r["text"] for r in profiles.load_prompts() if r["id"] == "medium-01")


def run(args: argparse.Namespace) -> int:
    from ..core import catalog
    from ..core.errors import UserError
    from ..experiment import profiles

    if args.model != "original" and args.batch:
        raise UserError(f"--batch is built for the original model's T3 only, not {args.model}")
    check_language(args)
    if args.language != "en" and args.prompt is None:
        raise UserError(f"--language {args.language}: the default prompt is English; give the text with --prompt")
    text = args.prompt if args.prompt is not None else default_prompt()
    if not text.strip():
        raise UserError("--prompt is empty: give at least one word to speak")
    if args.combo:
        catalog.check(args.combo)  # before torch is imported
        from .. import variants
        reason = variants.unavailable(args.combo, model=args.model)  # the cheap checks: model, CUDA, packages
        if reason:
            raise UserError(f"--combo {args.combo}: {reason}")
    tokens = args.tokens or profiles.token_budget(profiles.get("full"), text)
    if args.save:
        return _run(args, text, tokens, Path(args.save))
    with tempfile.TemporaryDirectory(prefix="ttsopt-bench-") as tmp:
        return _run(args, text, tokens, Path(tmp))


def _run(args, text: str, tokens: int, directory: Path) -> int:
    import json

    import torch

    from ..experiment import bench, bench_quality
    from ..measure.env import cpu_model, cpu_units

    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("bench.jsonl", "bench.env.json", "bench.quality.json", "bench.floors.json"):
        (directory / stale).unlink(missing_ok=True)
    with steps(bench.steps(args.trials, args.stream, args.batch, args.memory), "bench") as progress:
        result = bench.run(directory, source=args.source, device=args.device, combo=args.combo, text=text,
                           tokens=tokens, trials=args.trials, seed=args.seed, stream=args.stream, batch=args.batch,
                           model=args.model, language=args.language, memory=args.memory,
                           first_chunk=args.first_chunk, progress=progress)
    device = torch.device("cuda" if str(result.records["device"].dropna().iloc[0]).startswith("cuda") else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"{cpu_model() or 'unknown CPU'} ({cpu_units() or 'no vector units known'}), {torch.get_num_threads()} threads"
    lines = [f"bench: {args.model} model, source {args.source}, device {device} ({where}), {tokens} tokens"
             f"{'' if args.tokens else ' (scaled with the text)'}, {args.trials} interleaved pair(s), "
             f"prompt {text!r}", f"       combo {result.combo} ({result.why})", "",
             bench.table(result.records).to_string(index=False, float_format=lambda v: f"{v:.3f}"), "",
             *bench.fidelity_lines(result.records), "", *bench_quality.lines(result.quality), "",
             *_floor_lines(result.floor), *_flow_floor_lines(result.flow_floor),
             *_first_audio_lines(result.first_audio_floor), *_load_lines(bench.load_parts(result.records)),
             *_extra_lines(result.records),
             "", f"evidence: {json.dumps(result.evidence, default=str, sort_keys=True)}"]
    print("\n".join(lines))
    if args.save:
        (directory / "bench.txt").write_text("$ " + shlex.join(["ttsopt", *sys.argv[1:]]) + "\n" + "\n".join(lines)
                                             + "\n", encoding="utf-8")
        floors = {"t3_step": result.floor, "flow": result.flow_floor, "first_audio": result.first_audio_floor}
        (directory / "bench.floors.json").write_text(json.dumps(floors, indent=1, default=float) + "\n",
                                                     encoding="utf-8")
        (directory / "bench.quality.json").write_text(json.dumps(bench_quality.as_json(result.quality), indent=1,
                                                                 default=float) + "\n", encoding="utf-8")
        _figure(directory, result)
        print(f"saved {directory / 'bench.txt'}, the records and clips in {directory} and {directory / 'bench.png'}")
    return 0


def _floor_lines(f: dict) -> list[str]:
    b, x = f["baseline"], f["variant"]
    return [
        f"{'T3 step memory floor':32s} {'baseline':>12s} {'fast':>12s}",
        f"{'  weights read per step MiB':32s} {b['weight_mb']:12.1f} {x['weight_mb']:12.1f}",
        f"{'  + KV cache at mean length MiB':32s} {b['step_mb'] - b['weight_mb']:12.1f} "
        f"{x['step_mb'] - x['weight_mb']:12.1f}",
        f"{'  measured ms per token':32s} {b['step_ms']:12.2f} {x['step_ms']:12.2f}",
        f"{'  achieved read rate GB/s':32s} {b['achieved_gb_s']:12.1f} {x['achieved_gb_s']:12.1f}",
        f"{'  floor at device bandwidth ms':32s} {b['floor_ms']:12.2f} {x['floor_ms']:12.2f}",
        f"{'  floor / measured':32s} {b['floor_ms'] / b['step_ms']:12.0%} {x['floor_ms'] / x['step_ms']:12.0%}",
        f"device read bandwidth {f['read_bandwidth_gb_s']:.1f} GB/s ({f['bandwidth_probe']}); "
        f"{f['prefill_positions']} positions before the first speech token",
        f"=> reading these bytes, no fast step can beat the measured baseline by more than "
        f"{f['t3_gain_ceiling']:.2f}x on this device",
        *_step_parts_lines(f),
    ]


def _step_parts_lines(f: dict) -> list[str]:
    """Where each side's step went, by `bench.step_profile`; nothing where it did not run (CUDA)."""
    b, x = f["baseline"], f["variant"]
    if "products_ms" not in x:
        return []
    def rest(side):
        return side["step_ms"] - side["products_ms"] - side["attention_ms"]
    return [
        "",
        f"{'T3 step, where it went':32s} {'baseline':>12s} {'fast':>12s}",
        f"{'  products with the weights ms':32s} {b['products_ms']:12.2f} {x['products_ms']:12.2f}",
        f"{'    their read rate GB/s':32s} {b['products_gb_s']:12.1f} {x['products_gb_s']:12.1f}",
        f"{'  attention over the cache ms':32s} {b['attention_ms']:12.2f} {x['attention_ms']:12.2f}",
        f"{'  the rest of the step ms':32s} {rest(b):12.2f} {rest(x):12.2f}",
        f"by torch.profiler over one more decode of {x['profiled_steps']} tokens per side, after the timings: "
        "each step's self time in its products with the weights (linear layers and speech head) and in its "
        "attention over the cache; the rest is the measured step less both (the profiler slows its many small "
        "operators most, so their profiled time is not used)",
        f"=> at the rates these kernels ran, the fast step's products and attention alone take "
        f"{x['products_ms'] + x['attention_ms']:.2f} ms: no step built from them can beat the measured baseline "
        f"by more than {f['t3_kernel_gain_ceiling']:.2f}x on this device",
    ]


def _flow_floor_lines(f: dict) -> list[str]:
    if not f:
        return []
    b, x = f["baseline"], f["variant"]
    return [
        "",
        f"{'S3Gen flow compute floor':32s} {'baseline':>12s} {'fast':>12s}",
        f"{'  arithmetic per flow call GFLOP':32s} {b['gflop']:12.1f} {x['gflop']:12.1f}",
        *(f"{'    of which ' + kind + ' GFLOP':32s} {b['by_kind_gflop'].get(kind, 0):12.1f} "
          f"{x['by_kind_gflop'].get(kind, 0):12.1f}" for kind in roofline_kinds(b, x)),
        *(f"{'    in ' + kind + ' GFLOP':32s} {b['by_precision_gflop'].get(kind, 0):12.1f} "
          f"{x['by_precision_gflop'].get(kind, 0):12.1f}" for kind in f["rates_gflop_s"]),
        f"{'  measured flow s':32s} {b['flow_s']:12.2f} {x['flow_s']:12.2f}",
        f"{'  achieved GFLOP/s':32s} {b['achieved_gflop_s']:12.1f} {x['achieved_gflop_s']:12.1f}",
        f"{'  floor at the device rates s':32s} {b['floor_s']:12.2f} {x['floor_s']:12.2f}",
        f"{'  floor / measured':32s} {b['floor_s'] / b['flow_s']:12.0%} {x['floor_s'] / x['flow_s']:12.0%}",
        "  device rates GFLOP/s: " + ", ".join(f"{k} {r:.1f}" for k, r in f["rates_gflop_s"].items()),
        f"arithmetic of one flow call of {f['tokens']} tokens with the voice's prompt in front, counted by "
        "torch.utils.flop_counter (products, convolutions, attention; elementwise work not counted), each "
        "operator's share in the kind it ran in (its operands' dtype, or int8-dynamic) at that kind's rate; "
        f"device rates: {f['rate_probe']}",
        f"=> doing this arithmetic in these kinds, no fast flow can beat the measured baseline by more than "
        f"{f['flow_gain_ceiling']:.2f}x on this device",
    ]


def _load_lines(parts: dict) -> list[str]:
    """The own processes' loads, part by part (`bench.load_parts`)."""
    if not parts or parts["n"] == 0:
        return []
    b, x = parts["baseline"], parts["variant"]
    names = ["reading the model", *(k for k in x if k not in ("reading the model", "the rest", "load")), "the rest"]
    return ["", f"{'load s (own process), where it went':42s} {'baseline':>10s} {'fast':>10s}",
            *(f"  {name + ' s':40s} {b.get(name, 0.0):10.2f} {x.get(name, 0.0):10.2f}" for name in names),
            f"  {'the whole load s':40s} {b['load']:10.2f} {x['load']:10.2f}",
            f"medians over {parts['n']} fresh process(es) per side: reading the weights, each variant's own "
            "load-time work (quantizing, packing, planning, casting), and the rest (the pipeline, memory readings); "
            "each part's median is its own, so they need not add up to the whole's"]


def _first_audio_lines(f: dict) -> list[str]:
    if not f:
        return []
    from ..experiment.bench import FIRST_AUDIO_PARTS
    lines = ["", f"{'stream: first audio at the floors':42s} {'fast':>10s} {'floor':>12s}"]
    for part, label in FIRST_AUDIO_PARTS.items():
        p = f["parts"][part]
        label += f", {f['first_chunk_tokens']} tokens" if part == "decode_s" else ""
        floor = "as measured" if p["floor_s"] is None else f"{p['floor_s']:.2f}"
        lines.append(f"  {label + ' s':40s} {p['measured_s']:10.2f} {floor:>12s}")
    flow_floor = f["parts"]["flow_s"]["floor_s"]
    return [*lines, f"  {'first audio s':40s} {f['first_audio_s']:10.2f} {f['floor_s']:12.2f}",
            f"medians of the fast side's streams; the first chunk's flow call does {f['flow_gflop']:.1f} GFLOP "
            "(counted as above: " + ", ".join(f"{g:.1f} in {k}" for k, g in f["by_precision_gflop"].items())
            + ") at the device rates above, its decode at T3's step floor above",
            f"=> reading these bytes and doing this arithmetic, the fast side's first audio cannot come sooner than "
            f"{f['floor_s']:.2f} s on this device, {flow_floor:.2f} s of it the first chunk's flow"]


def roofline_kinds(*sides: dict) -> list[str]:
    """The operator kinds either side's flow did arithmetic in, largest first."""
    kinds = {k for side in sides for k in side.get("by_kind_gflop", {})}
    return sorted(kinds, key=lambda k: -max(side.get("by_kind_gflop", {}).get(k, 0) for side in sides))


def _extra_lines(records) -> list[str]:
    from ..core.vocab import Phase
    out = []
    streams = records[records["phase"] == Phase.STREAM]
    if len(streams):
        size = streams["x_chunk_tokens"].iloc[0]
        first = streams["x_first_chunk_tokens"].iloc[0] if "x_first_chunk_tokens" in streams else size
        out.append(f"stream: chunks of {size:.0f} tokens{f' (the first {first:.0f})' if first != size else ''}, "
                   f"{streams['x_chunks'].median():.0f} per synthesis, {len(streams)} streams (rows above)")
        if "x_prompt_frames" in streams:
            frames = streams["x_prompt_frames"].max()
            out.append(f"  every chunk's flow renders the reference prompt's {frames:.0f} mel frames again in front "
                       "of its own: the estimator attends over all frames at every step, so none of that work "
                       "depends on the voice alone")
    out += _batch_lines(records[records["phase"] == Phase.BATCH])
    return out


def _batch_lines(batches) -> list[str]:
    """What the batch rows compare, and whether the batch spoke what one at a time spoke."""
    import pandas as pd

    from ..core.vocab import Side
    from ..experiment.bench import BATCH_SIDES
    if batches.empty:
        return []
    n = batches["x_prompts"].iloc[0]
    lines = [f"batch rows: {n:.0f} copies of the prompt, seeds {batches['seed'].iloc[0]:.0f} on; baseline column "
             f"{BATCH_SIDES[Side.BASELINE]}, fast column {BATCH_SIDES[Side.VARIANT]}; {batches['pair'].nunique()} "
             "pair(s), in alternating order"]
    if "x_token_match" in batches:
        rows = batches[batches["side"] == Side.VARIANT]
        match = pd.to_numeric(rows["x_token_match"])
        lines.append(f"  the batch spoke the tokens one at a time spoke in {int((match == 1.0).sum())} of {len(match)} "
                     f"pair(s) (token match {match.min():.4f} at worst)")
        if (match < 1.0).any():
            lines.append(_batch_loss(rows["variant"].iloc[0]))
    return lines


def _batch_loss(variant: str) -> str:
    """Why a batch spoke other tokens than one at a time, as far as the combination tells."""
    from ..variants.fast import dynamic_int8
    if dynamic_int8(variant):
        return ("  dynamic int8 linears quantize a product's input with one scale over all its rows, so a batch's "
                "other prompts move each prompt's numbers: batching them is lossy")
    return (f"  {variant} has no dynamic int8 layer, and a float batch computes each row as one prompt does: "
            "tokens that differ here are a defect of the batch path, worth a report")


def _figure(directory: Path, result) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from ..core.vocab import STAGES, Phase, Side
    from ..report.plots import bench_figure, save
    trials = result.records[(result.records["phase"] == Phase.TRIAL)]
    sides = {}
    for side, name in ((Side.BASELINE, "baseline"), (Side.VARIANT, "fast")):
        rows = trials[trials["side"] == side]
        sides[name] = [{"stages": {s: float(r.get(f"stage_{s}", 0.0) or 0.0) for s in STAGES}, "wall_s": r["wall_s"]}
                       for r in rows.to_dict("records")]
    floor = dict(result.floor, fast=result.floor["variant"])
    flow = dict(result.flow_floor, fast=result.flow_floor["variant"]) if result.flow_floor else None
    save(bench_figure(sides, floor, flow), directory / "bench.png")
