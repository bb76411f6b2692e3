"""Keeping secrets out of everything written: tokens, keys and passwords are found in the
environment and in huggingface_hub's token files, and replaced wherever they appear."""
from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

REDACTED = "[redacted]"
_SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
# Flag-like values are never secrets; without this TOKENIZERS_PARALLELISM=false would
# redact every "false", and a numeric MAX_TOKENS would corrupt numbers inside the JSON
# evidence strings.
_NOT_SECRETS = {"true", "false", "none", "null"}


def _hf_token_files() -> list[Path]:
    # The places huggingface_hub reads and writes tokens.
    paths = [Path.home() / ".cache" / "huggingface"]
    if "XDG_CACHE_HOME" in os.environ:
        paths.append(Path(os.environ["XDG_CACHE_HOME"]) / "huggingface")
    if "HF_HOME" in os.environ:
        paths.append(Path(os.environ["HF_HOME"]))
    files = [p / name for p in paths for name in ("token", "stored_tokens")]
    if "HF_TOKEN_PATH" in os.environ:
        files.append(Path(os.environ["HF_TOKEN_PATH"]))
    return files


def _read_token_file(path: Path) -> set[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return set()
    if path.name != "stored_tokens":
        return {text.strip()}
    # stored_tokens is INI: one section per saved token, its value under hf_token.
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return set()
    return {parser[s].get("hf_token", "") for s in parser.sections()}


def secret_values() -> set[str]:
    """Values that must never appear in anything written: tokens, keys, passwords."""
    values = {
        value
        for name, value in os.environ.items()
        if any(part in name.upper() for part in _SECRET_NAME_PARTS)
    }
    for path in _hf_token_files():
        values |= _read_token_file(path)
    return {
        v
        for v in values
        if len(v) >= 4 and v.lower() not in _NOT_SECRETS and not v.isdigit()
    }


def _redact(obj, needles: list[str]):
    if isinstance(obj, str):
        for needle in needles:
            obj = obj.replace(needle, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {_redact(k, needles): _redact(v, needles) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_redact(v, needles) for v in obj)
    return obj


def redact(obj):
    """A copy of `obj` (dicts, lists, tuples, strings) with every secret replaced."""
    secrets = secret_values()
    # A secret with quotes or backslashes appears escaped inside JSON strings.
    needles = secrets | {json.dumps(s)[1:-1] for s in secrets}
    # Longest first, so a secret containing another is replaced whole.
    return _redact(obj, sorted(needles, key=len, reverse=True))
