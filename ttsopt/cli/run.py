"""`ttsopt run`: the batch suite — the reference A/A, then every variant in a seeded random order,
each in a fresh kernel — then the report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_model, count


def register(sub) -> None:
    from ..experiment import profiles

    p = sub.add_parser("run", help="run the reference A/A and variants, each in a fresh kernel, "
                                   "then write DIR/index.html")
    add_model(p, default_source="tiny")
    p.add_argument("--variants", default="all",
                   help="'all' (every registered variant) or a comma-separated list; a+b composes")
    p.add_argument("--profile", default="smoke", choices=list(profiles.PROFILES), help="how much work per run")
    p.add_argument("--out", required=True, help="results directory (records, notebooks, report)")
    p.add_argument("--prompts", default=str(profiles.PROMPTS_CSV), help="prompt set, CSV with id,category,text")
    p.add_argument("--resume", action="store_true", help="skip runs whose records in --out are already complete")
    p.add_argument("--no-profiling", dest="profiling", action="store_false",
                   help="skip the torch.profiler pass (traces and operator tables) of the reference run")
    p.add_argument("--wait-quiet", action="store_true",
                   help="before each run, wait until no other process is using the CPU")
    p.add_argument("--order-seed", type=count, default=0, help="seed of the suite's random run order (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment import profiles, suite
    from ..report import html

    profiles.load_prompts(args.prompts)  # a bad prompt file stops here, not once per run
    runs = suite.plan(args.source, suite.resolve_names(args.variants), args.profile, args.out, device=args.device,
                      prompts_csv=str(Path(args.prompts).resolve()), order_seed=args.order_seed)
    stopped = None
    try:
        outcomes = suite.run_suite(runs, resume=args.resume, profiling=args.profiling, wait_quiet=args.wait_quiet,
                                   order_seed=args.order_seed)
    except suite.SuiteStopped as exc:
        stopped, outcomes = exc, []
    index = html.build(args.out)
    if stopped:
        print(f"ttsopt run: stopped: {stopped} (report of what ran: {index})", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print(", ".join(f"{n} {status}" for status, n in counts.items()) + f" -> {index}")
    return 0
