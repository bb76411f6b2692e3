"""Resident memory of S3Gen's flow on a long utterance, part by part: one flow call of N tokens
(the voice's prompt in front) with fast-s3gen, its encoder's peak and each estimator call's peak
above the resident set at their start, and the call's time. For reading what bounds the flow's
memory, e.g. the product attention's blocks of queries (`engine.attention.SCORES_BYTES`) against
one block: run once per setting, each in a fresh process, since a process keeps what it freed.

    .venv/bin/python scripts/flow-memory.py --tokens 1000 [--scores-mib 64] [--spec fast-s3gen]
"""
import argparse
import time
import warnings

import torch

from ttsopt import variants
from ttsopt.engine import attention, sources
from ttsopt.engine.pipeline import Pipeline
from ttsopt.measure import memory
from ttsopt.measure.env import cpu_model


def tracked(module, peaks: list) -> None:
    """Append MODULE's resident peak (MiB above its start) to PEAKS at every call."""
    forward = module.forward

    def measured(*args, **kwargs):
        with memory.track("cpu", "call") as mem:
            out = forward(*args, **kwargs)
        peaks.append(mem.as_dict().get("rss_call_peak_mb", float("nan")))
        return out

    module.forward = measured


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--scores-mib", type=float, default=attention.SCORES_BYTES / 2**20,
                   help="the most one block of the product attention's scores holds (default: the engine's)")
    p.add_argument("--spec", default="fast-s3gen", help="variants applied (the product attention needs fast-s3gen "
                                                        "on a CPU with avx512_bf16 and no AMX)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    pipeline = Pipeline(sources.load("synthetic", "cpu", model="original"))
    variants.apply(pipeline, args.spec)
    flow = pipeline.model.s3gen.flow
    given, _ = attention.use_products(flow.decoder, int(args.scores_mib * 2**20)) \
        if attention.processors(flow.decoder).get("ProductAttention") else (0, 0)
    conds = pipeline.conditioning()
    tokens = torch.randint(0, 6561, (args.tokens,), generator=torch.Generator().manual_seed(0))
    encoder, estimator = [], []
    with torch.inference_mode():
        pipeline.flow(tokens[:20], conds)  # warm, untracked
        tracked(flow.encoder, encoder)
        tracked(flow.decoder.estimator, estimator)
        start = time.perf_counter()
        mel = pipeline.flow(tokens, conds)
        seconds = time.perf_counter() - start
    frames = mel.size(2) + conds.gen["prompt_feat"].size(1)
    blocks = f"blocks of at most {args.scores_mib:g} MiB of scores" if given else "no product attention"
    print(f"{args.spec}, {args.tokens} tokens ({frames} frames with the prompt), {blocks}, {cpu_model()}, "
          f"{torch.get_num_threads()} threads: flow {seconds:.1f} s; resident peak above start: encoder "
          f"{encoder[0]:.0f} MiB, estimator calls {min(estimator):.0f}-{max(estimator):.0f} MiB "
          f"({len(estimator)} calls)")


if __name__ == "__main__":
    main()
