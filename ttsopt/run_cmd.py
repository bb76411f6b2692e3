"""`ttsopt run`: the batch suite — baseline, A/A, every variant in its own kernel — then the report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import profiles


def register(sub) -> None:
    p = sub.add_parser("run", help="run the baseline, an A/A repeat and variants, each in a fresh kernel, "
                                   "then write DIR/index.html")
    p.add_argument("--source", default="tiny", help="hub, local:DIR, synthetic or tiny (default: tiny)")
    p.add_argument("--variants", default="all",
                   help="'all' (every registered variant) or a comma-separated list; a+b composes")
    p.add_argument("--profile", default="smoke", choices=list(profiles.PROFILES), help="how much work per run")
    p.add_argument("--out", required=True, help="results directory (records, notebooks, report)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--prompts", default=str(profiles.PROMPTS_CSV), help="prompt set, CSV with id,category,text")
    p.add_argument("--resume", action="store_true", help="skip runs whose records in --out are already complete")
    p.add_argument("--no-profiling", dest="profiling", action="store_false",
                   help="skip the torch.profiler pass (traces and operator tables) after each run's trials")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import report, suite

    profiles.load_prompts(args.prompts)  # a bad prompt file stops here, not once per run
    runs = suite.plan(args.source, suite.resolve_names(args.variants), args.profile, args.out,
                      device=args.device, prompts_csv=str(Path(args.prompts).resolve()))
    outcomes = suite.run_suite(runs, resume=args.resume, profiling=args.profiling)
    index = report.build(args.out)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print(", ".join(f"{n} {status}" for status, n in counts.items()) + f" -> {index}")
    baseline = outcomes[0] if outcomes else None
    if baseline and baseline.status not in ("ok", "skipped"):
        print(f"the baseline did not complete ({baseline.reason}): nothing could be compared", file=sys.stderr)
        return 1
    return 0
