"""The names of the built-in variants and their aliases, as data. A command line refuses a
misspelt variant from this list before it imports torch and the variant modules (which take
seconds); a test keeps the list equal to `variants.registry()`. Variants of your own, joined
through TTSOPT_VARIANT_MODULES, are only known to the registry, so with that set the check is
left to it."""
from __future__ import annotations

import os

from .errors import UserError

PLUGINS_ENV = "TTSOPT_VARIANT_MODULES"
BASELINE = "baseline"

# name -> aliases
NAMES: dict[str, tuple[str, ...]] = {
    "alignment-analyzer": (), "bf16": (), "bf16-vocoder": (), "bnb-int8": (), "bnb-nf4": (), "cfm-steps-1": (),
    "cfm-steps-2": (), "cfm-steps-4": (), "cfm-steps-6": (), "channels-last": (), "compiled-s3gen": (),
    "compiled-t3": (), "cpu-int8": (), "cpu-int8-t3": ("torch-int8-t3",), "cpu-int8-head": (), "cpu-int4-t3": (),
    "cpu-offload": (), "cuda-cache": (), "fast-s3gen": (), "fast-t3": (), "fast-vocoder": (), "flash-attention": (),
    "fp16": (), "half-kv": (), "no-grad": (), "static-kv-cache": (), "stream": (), "token-budget": (), "vocos": (),
    "warmup": (),
}


def check(spec: str | None) -> None:
    """Refuse the names in SPEC (`all`, or comma-separated variants and a+b compositions) that no
    built-in variant has. Conflicts between known names are the registry's to check."""
    if not spec or os.environ.get(PLUGINS_ENV, "").strip():
        return
    known = set(NAMES) | {a for aliases in NAMES.values() for a in aliases} | {BASELINE, "all"}
    parts = [n.strip() for item in spec.split(",") for n in item.split("+") if n.strip()]
    unknown = [n for n in parts if n not in known]
    if unknown:
        raise UserError(f"unknown variant {', '.join(unknown)}; known: {', '.join(NAMES)}")
