"""`ttsopt report DIR`: rebuild DIR/index.html and the run pages from the stored records, or with
`--json` print one JSON object per run (the verdict table) for scripts. Needs no torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild the HTML report of a results directory, or print its verdicts")
    p.add_argument("dir", help="results directory written by `ttsopt run`")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of writing HTML")
    p.add_argument("--no-pages", dest="pages", action="store_false",
                   help="skip the per-run pages exported from the executed notebooks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        raise UserError(f"results directory {directory} does not exist" if not directory.exists()
                        else f"{directory} is a file: give the results directory written by `ttsopt run`")
    from ..report import html

    if args.json:
        for row in html.json_lines(directory):
            print(json.dumps(row, sort_keys=True))
        return 0
    print(html.build(directory, pages=args.pages))
    return 0
