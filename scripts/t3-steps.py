"""The T3 decode step alone, per variant spec, on one machine in one process: each spec's own
copy of the model, rounds interleaved so drift falls on every spec alike, and per spec the
median step time with its range over the rounds, and each later spec's gain over the first
with its interval over the rounds (each round pairs them). For choosing between step paths (TorchScript,
compiled, int8, int8 head) without a whole bench; the first round includes compilation and
TorchScript's profiling runs and is left out of the summary. A spec ending in `@eager` runs its
layers as eager ops even where the step would script them (how much TorchScript buys); one
ending in `@script` runs the TorchScript layer where the step would run the native one. `--prefill`
times the prefill instead (the conditioning and the text to T3's first token, every row at once:
what the first audio waits on before decoding starts), in ms per call.

    .venv/bin/python scripts/t3-steps.py fast-t3 compiled-t3 fast-t3+cpu-int8-t3 \
        fast-t3+cpu-int8-t3+cpu-int8-head fast-t3+cpu-int8-t3+cpu-int8-head@eager \
        fast-t3+cpu-int8-t3+cpu-int8-head@script \
        [--model original] [--source synthetic] [--steps 30] [--rounds 4] [--prefill]
"""
import argparse
import time
import warnings

import torch

from ttsopt.engine.pipeline import Pipeline
from ttsopt.engine.t3 import llama_step
from ttsopt.experiment import probes
from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units

TEXT = "The workbench measures every optimization in isolation, against the same baseline, with the same prompts."


def step_ms(pipeline: Pipeline, steps: int) -> float:
    s = pipeline.sampling
    with torch.inference_mode():
        text, conds = pipeline.text_to_tokens(TEXT), pipeline.conditioning()
        torch.manual_seed(0)
        state = pipeline.t3.prefill(conds.t3, text, s)
        start = time.perf_counter()
        pipeline.t3.decode(state, s, steps)
        return (time.perf_counter() - start) / steps * 1e3


def prefill_ms(pipeline: Pipeline) -> float:
    s = pipeline.sampling
    with torch.inference_mode():
        text, conds = pipeline.text_to_tokens(TEXT), pipeline.conditioning()
        torch.manual_seed(0)
        start = time.perf_counter()
        pipeline.t3.prefill(conds.t3, text, s)
        return (time.perf_counter() - start) * 1e3


def _plan(pipeline: Pipeline):
    """PIPELINE's step plan, built now: it keeps its modules."""
    stage = pipeline.t3
    return stage._plan() if hasattr(stage, "_plan") else llama_step.plan_for(stage.t3.tfmr)


def unscript(pipeline: Pipeline) -> None:
    """Make PIPELINE's step plan run eager ops."""
    plan = _plan(pipeline)
    plan.scripted, plan.native, plan.native_int4, plan.kind = None, None, None, f"eager ({plan.kind} unscripted)"


def script(pipeline: Pipeline) -> None:
    """Make PIPELINE's step run the TorchScript layer where it would run the native one."""
    plan = _plan(pipeline)
    if plan.native is not None:
        plan.native, plan.kind = None, plan.kind.replace("native", "torchscript")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", help="variant specs whose T3 stage offers prefill/decode (fast-t3 and kin)")
    p.add_argument("--model", default="original", help="original or turbo (multilingual's T3 is the original's)")
    p.add_argument("--source", default="synthetic")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--prefill", action="store_true", help="time the prefill (ms per call) instead of the step")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    pipelines = probes.spec_pipelines(args.specs, args.model, args.source, {"eager": unscript, "script": script})
    timed = prefill_ms if args.prefill else (lambda p: step_ms(p, args.steps))
    times = rounds.interleaved({spec: (lambda p=pipeline: timed(p)) for spec, pipeline in zip(args.specs, pipelines)},
                               args.rounds, say=lambda line: print(line, flush=True),
                               unit="ms/prefill" if args.prefill else "ms/step")
    what = "prefill" if args.prefill else f"decode step, {args.steps} steps"
    print(f"\nT3 {what}, {args.model} model, {args.source} weights, {cpu_model()} "
          f"({cpu_units()}) ({torch.get_num_threads()} threads); {rounds.kept_rounds(args.rounds)}")
    for spec, pipeline in zip(args.specs, pipelines):
        evidence = pipeline.t3.evidence()
        extra = f", compiled in {evidence['compile']['compile_s']} s" if "compile" in evidence else ""
        print(f"  {spec:42s} {rounds.summary(times[spec], digits=1)} ms {evidence.get('layer_step')}{extra}")
    for spec in args.specs[1:]:
        gain = rounds.paired(times[spec], times[args.specs[0]])
        print(f"  {spec:42s} against {args.specs[0]}, round by round: {gain}")


if __name__ == "__main__":
    main()
