"""`ttsopt report DIR`: rebuild DIR/index.html and the run pages from the stored results."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild the HTML report of a results directory")
    p.add_argument("dir", help="results directory written by `ttsopt run`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import report

    print(report.build(args.dir))
    return 0
