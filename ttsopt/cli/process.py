"""`ttsopt process CONFIG`: one process of a cross-process run (a side of a round), started by its
parent run; CONFIG is the run's configuration as JSON. Prints the process's summary as JSON."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub) -> None:
    p = sub.add_parser("process", help="(used by runs) one process of a cross-process run")
    p.add_argument("config", help="the RunConfig of the process, as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import UserError
    from ..experiment.runner import RunConfig, execute_process

    try:
        cfg = RunConfig(**json.loads(args.config))
    except (ValueError, TypeError) as exc:
        raise UserError(f"not a run configuration: {exc}") from exc
    print(json.dumps(asdict(execute_process(cfg))))
    return 0
