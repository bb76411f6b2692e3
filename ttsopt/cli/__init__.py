"""`python -m ttsopt COMMAND` (or `ttsopt COMMAND`): each command lives in its own module with
`register(subparsers)`; shared options and their validators live in `options`."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import UserError

# command name -> module holding `register(subparsers)`; each registers a `func(args) -> int`.
COMMANDS = {
    "synth": "ttsopt.cli.synth",
    "bench": "ttsopt.cli.bench",
    "list": "ttsopt.cli.list",
    "run": "ttsopt.cli.run",
    "report": "ttsopt.cli.report",
    "prepare": "ttsopt.cli.prepare",
    "process": "ttsopt.cli.process",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttsopt", description="An honest optimization workbench for Chatterbox TTS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"ttsopt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ttsopt {args.command}: interrupted", file=sys.stderr)
        return 130
