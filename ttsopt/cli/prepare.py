"""`ttsopt prepare synthetic|tiny`: build the random weights once and keep them in the cache, so
that the first run of a suite loads like every other instead of paying for the build."""
from __future__ import annotations

import argparse

from .options import count, model


def register(sub) -> None:
    p = sub.add_parser("prepare", help="build and cache the random weights of the synthetic or tiny source")
    p.add_argument("source", choices=("synthetic", "tiny"),
                   help="which random weights to build: synthetic (full size) or tiny")
    p.add_argument("--seed", type=count, default=0, help="weights seed (default: 0)")
    p.add_argument("--model", type=model, default="original", help="which Chatterbox: original, turbo or multilingual "
                                                                   "(default: original)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine import sources

    loaded = sources.load(args.source, device="cpu", seed=args.seed, model=args.model)
    where = sources.random_cache_dir(loaded.arch, args.seed, sources.REFERENCE_WAVS[args.model], args.model)
    print(f"{args.source} {args.model} weights ready" + (f" in {where}" if where else " (cache off)"))
    return 0
