"""`python -m ttsopt COMMAND` (or `ttsopt COMMAND`): each command lives in its own module with
`register(subparsers)`; shared options and their validators live in `options`."""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from pathlib import Path

from ..core.errors import StorageError, UserError, interruption, raise_on_sigterm
from . import quiet

# command name -> module holding `register(subparsers)`; each registers a `func(args) -> int`.
COMMANDS = {
    "synth": "ttsopt.cli.synth",
    "bench": "ttsopt.cli.bench",
    "list": "ttsopt.cli.list",
    "run": "ttsopt.cli.run",
    "report": "ttsopt.cli.report",
    "compare": "ttsopt.cli.compare",
    "score": "ttsopt.cli.score",
    "models": "ttsopt.cli.models",
    "prepare": "ttsopt.cli.prepare",
    "process": "ttsopt.cli.process",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttsopt", description="An honest optimization workbench for Chatterbox TTS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    for name, command in sub.choices.items():
        command.add_argument("-v", "--verbose", action="store_true",
                             help="show the libraries' warnings here instead of in the log file "
                                  f"({'OUT/logs/ttsopt.log' if name == 'run' else quiet.default_log(name)})")
    return parser


def log_file(args: argparse.Namespace) -> Path:
    """Where this command's library warnings go: the results folder for a suite and for the
    processes of its cross-process runs, else the user's cache."""
    if args.command == "run":
        return Path(args.out) / "logs" / "ttsopt.log"
    if args.command == "process":
        try:
            cfg = json.loads(args.config)
            return Path(cfg["out_dir"]) / "logs" / f"{cfg.get('run_id') or 'run'}.process.log"
        except (ValueError, KeyError, TypeError):
            pass  # the command itself names a bad config
    return quiet.default_log(args.command)


EXIT_BAD_INPUT, EXIT_STORAGE = 2, 74  # 74: EX_IOERR of sysexits.h


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = [*(sys.argv[1:] if argv is None else argv)]  # (`list` here is the list command's module)
    previous = raise_on_sigterm()
    try:
        with quiet.libraries_to(log_file(args), args.verbose):
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
