"""`ttsopt list`: every variant, the claim it is tested against, what it needs, and whether it
can run on this machine (cheap checks only: nothing is loaded)."""
from __future__ import annotations

import argparse
import textwrap


def register(sub) -> None:
    p = sub.add_parser("list", help="list the variants, their claims and whether they can run here")
    p.set_defaults(func=run)


def rows() -> list[dict]:
    from . import variants

    out = []
    for name, v in variants.registry().items():
        reason = v.check(None)
        out.append({**v.describe(), "here": "yes" if reason is None else f"not applicable: {reason}",
                    "conflicts": list(v.conflicts), "env": dict(v.env)})
    return out


def run(args: argparse.Namespace) -> int:
    for row in rows():
        print(f"{row['name']}{'  (lossless)' if row['lossless'] else ''}")
        print(textwrap.fill(row["claim"], width=96, initial_indent="  claim:    ", subsequent_indent=" " * 12))
        print(f"  requires: {', '.join(row['requires']) or 'nothing beyond the baseline'}")
        if row["conflicts"]:
            print(f"  conflicts with: {', '.join(row['conflicts'])}")
        if row["env"]:
            print(f"  sets, per process: {' '.join(f'{k}={v}' for k, v in row['env'].items())}")
        print(f"  runs here: {row['here']}")
    return 0
