"""How long making T3's int8 linears takes, torch's `quantize_dynamic` (per-channel qconfig) against
`quant.quantize_linears` (the same modules, each weight packed once, one layer per thread) and the
same one layer at a time; and the int8 weights of the step plan made both ways a load can make them:
linears quantized apart, then the plan's joined copies of q/k/v and gate/up packed, against those
linears quantized as one matrix each (`joins`, what cpu-int8-t3 does), which the plan reads as they
are. For Turbo's GPT-2, whose projections are transformers `Conv1D`s that `quantize_dynamic` does not
know, the comparison is its linears quantized from their transposed views, each copied in its worker
thread (what `quant.quantize_linears` does), against each weight first copied transposed, one after
another. On fresh copies of one synthetic full-size T3, rounds interleaved; the first round is left
out of the summary.

    .venv/bin/python scripts/quantize-time.py [--model original|turbo|multilingual] [--rounds 6]
"""
import argparse
import copy
import time
import warnings
from unittest import mock

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from ttsopt.engine import quant, sources
from ttsopt.engine.t3 import llama_step
from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units


def seconds(tfmr, make) -> float:
    copied = copy.deepcopy(tfmr)
    start = time.perf_counter()
    make(copied)
    return time.perf_counter() - start


def serially(module):
    """`quant.quantize_linears` with its layers quantized one after another."""
    with mock.patch.object(quant, "in_parallel", lambda fn, items: [fn(item) for item in items]):
        return quant.quantize_linears(module)


def copied_transposed(module):
    """`quant.quantize_linears` with each Conv1D's weight first copied into an nn.Linear's layout,
    one after another, as `quant.as_linears` did before its worker threads quantized the views."""
    def copying(child):
        linear = from_view(child)
        linear.weight = torch.nn.Parameter(linear.weight.detach().contiguous(), requires_grad=False)
        return linear
    from_view = quant._from_conv1d
    with mock.patch.object(quant, "_from_conv1d", copying):
        return quant.quantize_linears(module)


def apart_then_plan(module):
    quant.quantize_linears(module)
    return llama_step.Plan.layer_args(module)


def joined_then_plan(module):
    quant.quantize_linears(module, joins=llama_step.joins(module))
    return llama_step.Plan.layer_args(module)


LLAMA_PAIRS = (("quant.quantize_linears", "quantize_dynamic"), ("quant.quantize_linears", "one layer at a time"),
               ("joined, then the plan", "apart, then the plan's joins"))
GPT2_PAIRS = (("quant.quantize_linears", "weights copied transposed first"),
              ("quant.quantize_linears", "one layer at a time"))


def makers(model: str) -> dict:
    if model == "turbo":
        return {"quant.quantize_linears": quant.quantize_linears, "weights copied transposed first": copied_transposed,
                "one layer at a time": serially}
    return {"quantize_dynamic": lambda m: quantize_dynamic(m, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                           dtype=torch.qint8, inplace=True),
            "quant.quantize_linears": quant.quantize_linears, "one layer at a time": serially,
            "apart, then the plan's joins": apart_then_plan, "joined, then the plan": joined_then_plan}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="original", choices=("original", "turbo", "multilingual"))
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    tfmr = sources.load("synthetic", "cpu", model=args.model).t3.tfmr
    ways = makers(args.model)
    times = rounds.interleaved({name: (lambda make=make: seconds(tfmr, make)) for name, make in ways.items()},
                               args.rounds, say=lambda line: print(line, flush=True), unit="s")
    print(f"\nquantizing the {args.model} T3's linears, {cpu_model()} ({cpu_units()}), {torch.get_num_threads()} "
          f"threads; {rounds.kept_rounds(args.rounds)}")
    for name in ways:
        print(f"  {name:32s} {rounds.summary(times[name], digits=2)} s")
    for name, other in GPT2_PAIRS if args.model == "turbo" else LLAMA_PAIRS:
        print(f"  {name} against {other}, round by round: {rounds.paired(times[name], times[other])}")


if __name__ == "__main__":
    main()
