"""S3Gen's flow (or its vocoder) alone, per variant spec, on one machine in one process: each spec's
own copy of the model, the same speech tokens and noise seed for all, rounds interleaved so drift
falls on every spec alike, and per spec the median flow time with its range over the rounds and its
mel's relative error against the first spec's, and each later spec's gain over the first with its
interval over the rounds (each round pairs them). For choosing between flow paths (precision,
compiled estimator) without a whole bench; the first round includes compilation and is left out of
the summary. A spec ending in `@fused` puts torch's fused attention back in the flow after the
variants applied (fast-s3gen's bfloat16 estimator takes three batched products on a CPU without AMX:
`engine.attention`), and one ending in `@products` gives it the three products (to time them where
the fused kernel is the default, on a CPU with AMX). `baseline@bfloat16` makes the flow as
fast-s3gen does with a bfloat16 estimator attending in three products, `baseline@int8` with int8
linear layers and torch's fused float32 attention, `baseline@int8-bf16` with int8 linear layers
attending in bfloat16 products and convolutions in bfloat16, `baseline@int8-bf16-attention` the same
with float32 convolutions, whatever this CPU's default is. Under `scripts/as-avx2.sh` the same specs take
the paths an AVX2 CPU would (fast-s3gen's int8 estimator), on this machine's clock and memory.
`--profile` then runs each spec's flow once more under `torch.profiler` and prints its costliest
operators (where the time goes: products, attention, convolutions, or the elementwise glue between
them). `--stage vocoder` times each spec's vocoder on one mel instead: the first spec's flow output
for those tokens, the sine source's noise seeded alike, and reports the waveform's error.

    .venv/bin/python scripts/flow-steps.py baseline fast-s3gen fast-s3gen@fused fast-s3gen@products \
        fast-s3gen+compiled-s3gen baseline@bfloat16 baseline@int8-bf16 [--model original] [--source synthetic] \
        [--tokens 126] [--rounds 4] [--profile] [--stage vocoder]
"""
import argparse
import time
import warnings

import torch

from ttsopt.engine import attention
from ttsopt.engine.pipeline import Pipeline
from ttsopt.experiment import probes
from ttsopt.measure import profiler, rounds
from ttsopt.measure.env import cpu_model, cpu_units
from ttsopt.variants import fast


def flow_s(pipeline: Pipeline, tokens: torch.Tensor, conds) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        torch.manual_seed(0)
        start = time.perf_counter()
        mel = pipeline.flow(tokens, conds)
        return time.perf_counter() - start, mel.float()


def vocoder_s(pipeline: Pipeline, mel: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        torch.manual_seed(0)
        start = time.perf_counter()
        wav = pipeline.vocode(mel)
        return time.perf_counter() - start, wav.float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", help="variant specs (baseline for none)")
    p.add_argument("--model", default="original")
    p.add_argument("--source", default="synthetic")
    p.add_argument("--tokens", type=int, default=126, help="speech tokens per flow call (random, seed 0)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--profile", action="store_true", help="then one profiled flow call per spec: its top operators")
    p.add_argument("--stage", choices=("flow", "vocoder"), default="flow",
                   help="time the flow (default) or the vocoder on the first spec's mel")
    args = p.parse_args()
    if args.profile and args.stage != "flow":
        p.error("--profile profiles the flow; it cannot go with --stage vocoder")
    warnings.filterwarnings("ignore")
    paths = {"bfloat16": ("bfloat16", attention.PRODUCTS), "int8": ("int8", attention.FUSED),
             "int8-bf16": ("int8", attention.BF16_PRODUCTS, torch.bfloat16),
             "int8-bf16-attention": ("int8", attention.BF16_PRODUCTS)}
    after = {**{name: (lambda pipeline, path=path: fast.use_flow(pipeline, *path)) for name, path in paths.items()},
             "fused": lambda pipeline: attention.use_fused(pipeline.model.s3gen),
             "products": lambda pipeline: attention.use_products(pipeline.model.s3gen)}
    loaded = probes.spec_pipelines(args.specs, args.model, args.source, after)
    pipelines = [(spec, pipeline, pipeline.conditioning()) for spec, pipeline in zip(args.specs, loaded)]
    tokens = torch.randint(0, 6561, (args.tokens,), generator=torch.Generator().manual_seed(0))
    mels = {}
    if args.stage == "vocoder":
        _, mel = flow_s(pipelines[0][1], tokens, pipelines[0][2])

    def measure(spec, pipeline, conds):
        if args.stage == "vocoder":
            seconds, mels[spec] = vocoder_s(pipeline, mel)
        else:
            seconds, mels[spec] = flow_s(pipeline, tokens, conds)
        return seconds

    times = rounds.interleaved({spec: (lambda a=(spec, p, c): measure(*a)) for spec, p, c in pipelines},
                               args.rounds, say=lambda line: print(line, flush=True))
    ref = mels[args.specs[0]]
    what = "waveform" if args.stage == "vocoder" else "mel"
    print(f"\nS3Gen {args.stage}, {args.model} model, {args.tokens} tokens, {args.source} weights, {cpu_model()} "
          f"({cpu_units()}) ({torch.get_num_threads()} threads); {rounds.kept_rounds(args.rounds)}; "
          f"{what} error against {args.specs[0]}")
    for spec in args.specs:
        error = ((mels[spec] - ref).norm() / ref.norm()).item()
        print(f"  {spec:36s} {rounds.summary(times[spec])} s  first round {times[spec][0]:.2f} s  "
              f"{what} rel. error {error:.2e}")
    for spec in args.specs[1:]:
        gain = rounds.paired(times[spec], times[args.specs[0]])
        print(f"  {spec:36s} against {args.specs[0]}, round by round: {gain}")
    if args.profile:
        for spec, pipeline, conds in pipelines:
            profile(spec, pipeline, tokens, conds)


def profile(spec: str, pipeline: Pipeline, tokens: torch.Tensor, conds, top: int = 12) -> None:
    """One more flow call of PIPELINE under torch.profiler; its TOP operators by own CPU time."""
    seconds = []
    table = profiler.operators_of(lambda: seconds.append(flow_s(pipeline, tokens, conds)[0]), pipeline.device)
    share = 100 * table["self_cpu_ms"] / table["self_cpu_ms"].sum()
    print(f"\n{spec}: one profiled flow call, {seconds[0]:.2f} s; operators by own CPU time")
    for row, pct in zip(table.head(top).itertuples(), share):
        print(f"  {row.name[:56]:56s} {row.self_cpu_ms / 1e3:7.3f} s  {pct:5.1f}%  {row.calls:6d} calls")


if __name__ == "__main__":
    main()
