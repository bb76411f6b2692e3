"""Options several commands share, declared once with the same defaults, so a bad value is refused
by argparse before anything is imported or loaded. The rules themselves are `core.params`, which
the notebooks' parameters follow too."""
from __future__ import annotations

import argparse

from ..core import params
from ..core.errors import UserError
from ..core.params import MAX_TOKENS, SOURCE_HELP

__all__ = ["MAX_TOKENS", "SOURCE_HELP", "add_language", "add_model", "count", "device", "language", "positive",
           "source", "tokens"]


def _argument(rule):
    """RULE as an argparse type: its message becomes argparse's "argument --x: ..." line."""
    def parse(value: str):
        try:
            return rule(value)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = rule.__name__
    return parse


source = _argument(params.source)
model = _argument(params.model)
language = _argument(params.language)
device = _argument(params.device)
positive = _argument(params.positive)
tokens = _argument(params.tokens)
count = _argument(params.count)


def add_model(p: argparse.ArgumentParser, default_source: str) -> None:
    p.add_argument("--model", type=model, default="original", help=f"{params.MODEL_HELP} (default: original)")
    p.add_argument("--source", type=source, default=default_source, help=f"{SOURCE_HELP} (default: {default_source})")
    p.add_argument("--device", type=device, default="auto", help=f"{params.DEVICE_HELP} (default: auto)")


def add_language(p: argparse.ArgumentParser) -> None:
    p.add_argument("--language", type=language, default="en", help=params.LANGUAGE_HELP)


def check_language(args: argparse.Namespace) -> None:
    """--language against --model, before anything loads: one error naming both."""
    params.speaks(args.model, args.language)
