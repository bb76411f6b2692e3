"""`ttsopt list`: every variant, the claims it is tested against, what it needs, how it is measured,
which models of the family it is for, and whether it can run on this machine for the model asked
(cheap checks only: nothing is loaded)."""
from __future__ import annotations

import argparse
import json
import textwrap

from .options import model


def register(sub) -> None:
    p = sub.add_parser("list", help="list the variants, their claims and whether they can run here")
    p.add_argument("--json", action="store_true", help="one JSON object per variant")
    p.add_argument("--model", type=model, default="original",
                   help="whether each variant runs here for this model: original, turbo or multilingual "
                        "(default: original)")
    p.set_defaults(func=run)


def rows(model_name: str = "original") -> list[dict]:
    from .. import variants

    out = []
    for v in variants.registry().values():
        reason = v.applies_to(model_name) or v.check(None)
        out.append({**v.describe(), "here": "yes" if reason is None else f"not applicable: {reason}",
                    "conflicts": list(v.conflicts), "env": dict(v.env), "design_reason": v.design_reason,
                    "claim_metrics": [c.metric for c in v.claims]})
    return out


def run(args: argparse.Namespace) -> int:
    for row in rows(args.model):
        if args.json:
            print(json.dumps(row, sort_keys=True))
            continue
        aliases = f"  (also: {', '.join(row['aliases'])})" if row["aliases"] else ""
        print(f"{row['name']}{'  (lossless)' if row['lossless'] else ''}{aliases}")
        for text, metric in zip(row["claims"], row["claim_metrics"]):
            print(textwrap.fill(f"{text} [judged on {metric}]", width=96, initial_indent="  claim:    ",
                                subsequent_indent=" " * 12))
        print(f"  measured: {row['design']} ({row['design_reason']})")
        print(f"  models:   {', '.join(row['models'])}")
        print(f"  requires: {', '.join(row['requires']) or 'nothing beyond the baseline'}")
        if row["conflicts"]:
            print(f"  conflicts with: {', '.join(row['conflicts'])}")
        if row["env"]:
            print(f"  sets, per process: {' '.join(f'{k}={v}' for k, v in row['env'].items())}")
        print(f"  runs here ({args.model} model): {row['here']}")
    return 0
