"""The native decode step's attention over the KV cache alone (`torch.ops.ttsopt_t3.decode_attention`),
over a float32 cache and over a half one (`half-kv`), rounds interleaved: one step's worth of layers,
each with a cache of its own so that every sweep reads from memory, and the rate each sweep reads
its cache at. For telling how much of half-kv's gain the attention keeps (a sweep bound by the
memory halves; one bound by its arithmetic does not).

    .venv/bin/python scripts/decode-attention.py [--model original|turbo] [--length 400] [--rounds 12]
"""
import argparse

import torch

from ttsopt.engine.t3 import native
from ttsopt.measure import rounds
from ttsopt.measure.env import cpu_model, cpu_units
from ttsopt.measure.timing import Stopwatch

# (layers, rows, heads, head dim): the original's Llama T3 with its CFG pair, Turbo's GPT-2 with one row
SHAPES = {"original": (30, 2, 16, 64), "turbo": (24, 1, 16, 64)}


def sweep(caches: list, q: torch.Tensor, length: int) -> float:
    clock = Stopwatch(torch.device("cpu"))
    for k, v in caches:
        torch.ops.ttsopt_t3.decode_attention(q, k, v, length, 0.125)
    return clock.elapsed() * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(SHAPES), default="original")
    p.add_argument("--length", type=int, default=400, help="cached positions attended over")
    p.add_argument("--rounds", type=int, default=12)
    args = p.parse_args()
    if native.layer().op is None:
        raise SystemExit(f"the native layer is not built here: {native.layer().why}")
    layers, rows, heads, dim = SHAPES[args.model]
    torch.manual_seed(0)
    q = torch.randn(rows, heads, 1, dim)
    caches = {dtype: [tuple(torch.randn(rows, heads, args.length, dim).to(dtype) for _ in "kv") for _ in range(layers)]
              for dtype in (torch.float32, torch.float16)}
    subjects = {str(dtype).replace("torch.", ""): (lambda c=c: sweep(c, q, args.length)) for dtype, c in caches.items()}
    times = rounds.interleaved(subjects, args.rounds, say=lambda line: print(line, flush=True), unit="ms")
    print(f"\nattention over {args.length} cached positions, {layers} layers x {rows} row(s) x {heads} heads, "
          f"{cpu_model()} ({cpu_units()}), {torch.get_num_threads()} threads; {rounds.kept_rounds(args.rounds)}")
    for (name, readings), dtype in zip(times.items(), caches):
        mb = layers * 2 * rows * heads * args.length * dim * torch.empty((), dtype=dtype).element_size() / 1e6
        median = sorted(rounds.steady(readings))[len(rounds.steady(readings)) // 2]
        print(f"  {name:8s} cache {rounds.summary(readings)} ms   {mb:.0f} MB -> {mb / median:.1f} GB/s")
    print(f"  float16 against float32, round by round: {rounds.paired(times['float16'], times['float32'])}")


if __name__ == "__main__":
    main()
