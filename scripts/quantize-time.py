"""How long making T3's int8 linears takes, torch's `quantize_dynamic` (per-channel qconfig) against
`quant.quantize_linears` (the same modules, each weight packed once, its int8 weight kept for the
load's step plan, one layer per thread) and the same one layer at a time, on fresh copies of one
synthetic full-size T3, rounds interleaved; the first round is left out of the summary.

    .venv/bin/python scripts/quantize-time.py [--rounds 6]
"""
import argparse
import copy
import time
import warnings
from unittest import mock

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from ttsopt.engine import quant, sources
from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units


def seconds(tfmr, make) -> float:
    copied = copy.deepcopy(tfmr)
    start = time.perf_counter()
    make(copied)
    seconds = time.perf_counter() - start
    quant.forget_packed_from()  # as a load does once its variants are applied: each round starts alike
    return seconds


def serially(module):
    """`quant.quantize_linears` with its layers quantized one after another."""
    with mock.patch.object(quant, "in_parallel", lambda fn, items: [fn(item) for item in items]):
        return quant.quantize_linears(module)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    tfmr = sources.load("synthetic", "cpu", model="original").t3.tfmr
    makers = {"quantize_dynamic": lambda m: quantize_dynamic(m, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                             dtype=torch.qint8, inplace=True),
              "quant.quantize_linears": quant.quantize_linears,
              "one layer at a time": serially}
    times = rounds.interleaved({name: (lambda make=make: seconds(tfmr, make)) for name, make in makers.items()},
                               args.rounds, say=lambda line: print(line, flush=True), unit="s")
    print(f"\nquantizing T3's linears, {cpu_model()} ({cpu_units()}), {torch.get_num_threads()} threads; "
          f"{rounds.kept_rounds(args.rounds)}")
    for name in makers:
        print(f"  {name:24s} {rounds.summary(times[name], digits=2)} s")
    for other in ("quantize_dynamic", "one layer at a time"):
        print(f"  quant.quantize_linears against {other}, round by round: "
              f"{rounds.paired(times['quant.quantize_linears'], times[other])}")


if __name__ == "__main__":
    main()
