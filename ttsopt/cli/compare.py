"""`ttsopt compare DIR DIR [DIR ...]`: the verdicts of several suites side by side, and whether
each run's verdict repeats. Markdown for people (paste it into an issue), `--json` for scripts.
Needs no torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("compare", help="line up the verdicts of several results directories")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results directories written by `ttsopt run` (two or more)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of a Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.dirs) < 2:
        raise UserError("give two or more results directories to compare")
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        raise UserError(f"not a results directory: {', '.join(missing)}")
    from ..report import compare

    out, suites = compare.compare(args.dirs)
    if out.empty:
        raise UserError(f"no runs recorded in {', '.join(args.dirs)}")
    if args.json:
        for row in compare.json_rows(out, suites):
            print(json.dumps(row, sort_keys=True))
    else:
        print(compare.markdown(out, suites))
    return 0
