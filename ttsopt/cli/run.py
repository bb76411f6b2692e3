"""`ttsopt run`: the batch suite — the reference A/A, then every variant in a seeded random order,
each in a fresh kernel — then the report.

Everything that can be wrong with the arguments is found before the first kernel starts: the
prompt file, the results folder (another suite's records, a file of the user's in the way), the
variant names, a local weights folder, and CUDA when it is asked for. An interruption (Ctrl-C,
SIGTERM) records the run it cut off, writes the report of what finished and says how to resume.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..core import catalog
from ..core.errors import UserError
from ..core.vocab import Status
from .options import add_model, count

EXIT_CODES = """exit status:
  0    every run completed (whatever its verdict)
  1    some runs failed; the others and the report are kept
  2    bad input: nothing was run
  3    the reference run failed, so nothing could be compared
  74   a results file could not be written (disk full, permissions)
  130  interrupted by Ctrl-C; 143: by SIGTERM (the report of what finished is written)"""
EXIT_RUNS_FAILED, EXIT_STOPPED = 1, 3


def register(sub) -> None:
    from ..experiment import profiles

    p = sub.add_parser("run", help="run the reference A/A and variants, each in a fresh kernel, "
                                   "then write DIR/index.html",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model(p, default_source="tiny")
    p.add_argument("--variants", default="all",
                   help="'all' (every registered variant) or a comma-separated list; a+b composes")
    p.add_argument("--profile", default="smoke", choices=list(profiles.PROFILES),
                   help="how much work per run (default: smoke)")
    p.add_argument("--out", required=True, help="results directory (records, notebooks, report)")
    p.add_argument("--prompts", default=str(profiles.PROMPTS_CSV),
                   help="prompt set, CSV with id,category,text (UTF-8; default: the project's)")
    p.add_argument("--resume", action="store_true", help="skip runs whose records in --out are already complete")
    p.add_argument("--force", action="store_true",
                   help="--out holds another suite's results: move them aside (under superseded/) and start afresh")
    p.add_argument("--no-profiling", dest="profiling", action="store_false",
                   help="skip the torch.profiler pass (traces and operator tables) of the reference run")
    p.add_argument("--wait-quiet", action="store_true",
                   help="before each run, wait until no other process is using the CPU")
    p.add_argument("--order-seed", type=count, default=0, help="seed of the suite's random run order (default: 0)")
    p.set_defaults(func=run)


def preflight(args: argparse.Namespace) -> None:
    """Refuse bad input before any kernel starts; the cheap checks need no torch."""
    from ..experiment import folder, profiles

    catalog.check(args.variants)
    profiles.check_languages(profiles.load_prompts(args.prompts), args.model, args.prompts)
    folder.check(args.out, folder.identity(args.profile, args.source, args.device, args.prompts, args.model),
                 force=args.force)
    if args.source.startswith("local:") and not Path(args.source[len("local:"):]).is_dir():
        raise UserError(f"--source {args.source}: the folder {args.source[len('local:'):]} does not exist")
    if args.device != "cpu":
        from ..engine import sources
        sources.resolve_device(args.device)  # --device cuda where torch sees none


def run(args: argparse.Namespace) -> int:
    preflight(args)
    from ..experiment import suite
    from ..report import html

    runs = suite.plan(args.source, suite.resolve_names(args.variants), args.profile, args.out, device=args.device,
                      prompts_csv=str(Path(args.prompts).resolve()), order_seed=args.order_seed, model=args.model)
    try:
        outcomes = suite.run_suite(runs, resume=args.resume, profiling=args.profiling, wait_quiet=args.wait_quiet,
                                   order_seed=args.order_seed)
    except suite.SuiteStopped as exc:
        print(f"ttsopt run: stopped: {exc} (report of what ran: {html.build(args.out)})", file=sys.stderr)
        return EXIT_STOPPED
    except suite.SuiteInterrupted as exc:
        index = html.build(args.out)
        print(f"ttsopt run: interrupted by {exc.signal_name} during {exc.run_id} after {len(exc.outcomes)} of "
              f"{len(runs)} runs; report of what finished: {index}\n"
              f"resume with: {resume_command(args.argv)}", file=sys.stderr)
        return exc.exit_code
    index = html.build(args.out)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print(", ".join(f"{n} {status}" for status, n in counts.items()) + f" -> {index}")
    return EXIT_RUNS_FAILED if counts.get(Status.FAILED) else 0


def resume_command(argv: list[str]) -> str:
    """ARGV (this command line) with --resume, and without --force, which would clear what was kept."""
    return shlex.join(["ttsopt", *[a for a in argv if a not in ("--resume", "--force")], "--resume"])
