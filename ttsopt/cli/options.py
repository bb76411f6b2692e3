"""Options several commands share, declared once with the same defaults and validators, so a
bad value is refused by argparse before anything is imported or loaded."""
from __future__ import annotations

import argparse

SOURCE_HELP = "hub, local:DIR, synthetic or tiny"
MAX_TOKENS = 1000  # upstream's cap on speech tokens (40 s of speech); the pipeline enforces the same


def source(value: str) -> str:
    if value in ("hub", "synthetic", "tiny") or (value.startswith("local:") and len(value) > len("local:")):
        return value
    raise argparse.ArgumentTypeError(f"unknown source {value!r}: expected {SOURCE_HELP}")


def device(value: str) -> str:
    if value in ("auto", "cpu") or value == "cuda" or value.startswith("cuda:"):
        return value
    raise argparse.ArgumentTypeError(f"unknown device {value!r}: expected auto, cpu or cuda")


def _whole(value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {n}")
    return n


def positive(value: str) -> int:
    return _whole(value, 1)


def tokens(value: str) -> int:
    """A forced speech-token count, 1 to MAX_TOKENS (25 tokens are one second of speech)."""
    n = _whole(value, 1)
    if n > MAX_TOKENS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_TOKENS} (upstream's cap, 40 s of speech), got {n}")
    return n


def count(value: str) -> int:
    """A whole number from 0."""
    return _whole(value, 0)


def add_model(p: argparse.ArgumentParser, default_source: str) -> None:
    p.add_argument("--source", type=source, default=default_source, help=f"{SOURCE_HELP} (default: {default_source})")
    p.add_argument("--device", type=device, default="auto", help="auto, cpu or cuda (default: auto)")
