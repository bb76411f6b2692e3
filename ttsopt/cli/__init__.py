"""`python -m ttsopt COMMAND` (or `ttsopt COMMAND`): each command lives in its own module with
`register(subparsers)`; shared options and their validators live in `options`."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from ..core.errors import StorageError, UserError, interruption, raise_on_sigterm

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


EXIT_BAD_INPUT, EXIT_STORAGE = 2, 74  # 74: EX_IOERR of sysexits.h


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = [*(sys.argv[1:] if argv is None else argv)]  # (`list` here is the list command's module)
    previous = raise_on_sigterm()
    try:
        return args.func(args) or 0
    except StorageError as exc:
        print(f"ttsopt {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except UserError as exc:
        print(f"ttsopt {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        signal_name, code = interruption(exc)
        print(f"ttsopt {args.command}: interrupted ({signal_name})", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
