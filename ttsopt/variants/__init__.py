"""The variant registry. Every module in this package (other than `base` and private ones)
exposes `VARIANTS`, a list of `Variant` instances; they are found here without a central
list. Variants of your own, outside ttsopt, join through `TTSOPT_VARIANT_MODULES`
(comma-separated importable module names, each with a `VARIANTS` list) — also in the fresh
processes and kernels a suite starts, since they inherit the environment.

A spec names one variant or a composition joined by `+` (`bf16+static-kv-cache`), applied
left to right. `baseline` is the empty spec.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
from dataclasses import dataclass, field

from ..errors import UserError
from .base import NotApplicable, Variant

BASELINE = "baseline"


PLUGINS_ENV = "TTSOPT_VARIANT_MODULES"


def registry() -> dict[str, Variant]:
    found: dict[str, Variant] = {}
    modules = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
               if info.name != "base" and not info.name.startswith("_")]
    modules += [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"cannot import variant module {name} ({exc})") from exc
        for v in module.VARIANTS:
            if v.name in found:
                raise RuntimeError(f"variant {v.name} is defined twice")
            found[v.name] = v
    return dict(sorted(found.items()))


def parse(spec: str) -> list[Variant]:
    """Variants named by SPEC, checked for unknown names and incompatible pairs."""
    spec = (spec or "").strip()
    if spec in ("", BASELINE):
        return []
    known = registry()
    names = [n.strip() for n in spec.split("+")]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown variant {', '.join(unknown)}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UserError(f"variant spec {spec!r} names a variant twice")
    chosen = [known[n] for n in names]
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            if b.name in a.conflicts or a.name in b.conflicts:
                raise UserError(f"variants {a.name} and {b.name} cannot be combined")
    return chosen


@dataclass
class Applied:
    spec: str
    variants: list[Variant] = field(default_factory=list)

    def evidence(self, pipeline) -> dict:
        return {v.name: v.evidence(pipeline) for v in self.variants}

    def evidence_json(self, pipeline) -> str:
        return json.dumps(self.evidence(pipeline), default=str, sort_keys=True)


def unavailable(spec: str, pipeline=None) -> str | None:
    """The first reason SPEC cannot run here (cheap checks only without a pipeline)."""
    for v in parse(spec):
        reason = v.check(pipeline)
        if reason:
            return f"{v.name}: {reason}"
    return None


def apply(pipeline, spec: str) -> Applied:
    """Apply SPEC to PIPELINE in place. Raises NotApplicable rather than fall back silently."""
    chosen = parse(spec)
    for v in chosen:
        reason = v.check(pipeline)
        if reason:
            raise NotApplicable(v.name, reason)
    for v in chosen:
        v.apply(pipeline)
    for v in chosen:
        v.after_load(pipeline)
    return Applied(spec, chosen)


__all__ = ["BASELINE", "Applied", "NotApplicable", "Variant", "apply", "parse", "registry", "unavailable"]
