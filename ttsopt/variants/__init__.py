"""The variant registry. Every module in this package (other than `base` and private ones)
exposes `VARIANTS`, a list of `Variant` instances; they are found here without a central
list. Variants of your own, outside ttsopt, join through `TTSOPT_VARIANT_MODULES`
(comma-separated importable module names, each with a `VARIANTS` list) — also in the fresh
processes and kernels a suite starts, since they inherit the environment.

A spec names one variant or a composition joined by `+` (`bf16+static-kv-cache`), applied
left to right. `baseline` is the empty spec.

Eleven of the variants re-measure the optimizations of an earlier campaign to speed up
Chatterbox, whose own assessment found most of its claimed gains were measurement errors or did
not exist; each quotes that campaign's claim as data (`core.claims.Claim`, source "assessment
#N": the Nth optimization of that assessment), so a report shows claimed against measured. The
others are this workbench's own fast path; their claims state a direction, not a figure.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core import catalog
from ..core import claims as claims_mod
from ..core.errors import UserError
from ..core.vocab import Design
from .base import NotApplicable, Variant

BASELINE, PLUGINS_ENV = catalog.BASELINE, catalog.PLUGINS_ENV


def registry(aliases: bool = False) -> dict[str, Variant]:
    """Every registered variant by name (with ALIASES, also under each of its other names)."""
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
    if aliases:
        found.update({a: v for v in list(found.values()) for a in v.aliases})
    return dict(sorted(found.items()))


def parse(spec: str) -> list[Variant]:
    """Variants named by SPEC, checked for unknown names and incompatible pairs."""
    spec = (spec or "").strip()
    if spec in ("", BASELINE):
        return []
    known = registry(aliases=True)
    names = [n.strip() for n in spec.split("+")]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown variant {', '.join(unknown)}; known: {', '.join(registry())}")
    chosen = [known[n] for n in names]
    if len({v.name for v in chosen}) != len(chosen):
        raise UserError(f"variant spec {spec!r} names a variant twice")
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            if b.name in a.conflicts or a.name in b.conflicts:
                raise UserError(f"variants {a.name} and {b.name} cannot be combined")
    return chosen


def canonical(spec: str) -> str:
    """SPEC with aliases replaced by the names they stand for."""
    chosen = parse(spec)
    return "+".join(v.name for v in chosen) if chosen else BASELINE


def design(spec: str) -> tuple[Design, str]:
    """The design SPEC's measurement needs, and why: cross-process if any part needs it."""
    for v in parse(spec):
        if v.design == Design.CROSS_PROCESS:
            return Design.CROSS_PROCESS, f"{v.name}: {v.design_reason}"
        if v.env:
            return Design.CROSS_PROCESS, f"{v.name}: it sets {', '.join(v.env)} for its whole process"
    return Design.IN_PROCESS, "each part changes only its own copy of the model and pipeline"


def claims(spec: str) -> list[claims_mod.Claim]:
    return [c for v in parse(spec) for c in v.claims]


@dataclass
class Applied:
    spec: str
    parts: list[tuple[Variant, object]] = field(default_factory=list)  # (variant, its state)
    seconds: dict[str, float] = field(default_factory=dict)  # per variant, its load-time work (`apply`)

    def evidence(self, pipeline) -> dict:
        out = {v.name: v.evidence(pipeline, state) for v, state in self.parts}
        if pipeline.changes:
            out["pipeline_changes"] = [f"{stage} {how} by {by}" for stage, how, by in pipeline.changes]
        return out

    def engaged(self, evidence: dict) -> tuple[bool, str]:
        """Every part of a composition must be engaged for the composition to be."""
        verdicts = [(v.name, *v.engaged(evidence.get(v.name) or {})) for v, _ in self.parts]
        if not verdicts:
            return True, "the baseline"
        idle = [f"{name}: {why}" for name, ok, why in verdicts if not ok]
        if idle:
            return False, "; ".join(idle)
        return True, "; ".join(f"{name}: {why}" for name, _, why in verdicts)

    def evidence_json(self, pipeline) -> str:
        return json.dumps(self.evidence(pipeline), default=str, sort_keys=True)


def unavailable(spec: str, pipeline=None, model: str | None = None) -> str | None:
    """The first reason SPEC cannot run here, for MODEL (default: the pipeline's; cheap checks
    only without a pipeline)."""
    for v in parse(spec):
        reason = _reason(v, pipeline, model)
        if reason:
            return f"{v.name}: {reason}"
    return None


def _reason(v: Variant, pipeline, model: str | None) -> str | None:
    model = model or (pipeline.model.name if pipeline is not None else None)
    return (v.applies_to(model) if model else None) or v.check(pipeline)


def apply(pipeline, spec: str, clock: Callable[[], float] = time.perf_counter) -> Applied:
    """Apply SPEC to PIPELINE in place, each variant's work timed by CLOCK (`Applied.seconds`: the
    host's seconds; on CUDA, device work a variant queued may finish in the next one's). Raises
    NotApplicable rather than fall back silently."""
    chosen = parse(spec)
    for v in chosen:
        reason = _reason(v, pipeline, None)
        if reason:
            raise NotApplicable(v.name, reason)
    applied = Applied(spec)
    for v in chosen:
        start = clock()
        applied.parts.append((v, v.apply(pipeline)))
        applied.seconds[v.name] = clock() - start
    for v, state in applied.parts:
        start = clock()
        v.after_load(pipeline, state)
        applied.seconds[v.name] += clock() - start
    return applied


__all__ = ["BASELINE", "Applied", "NotApplicable", "Variant", "apply", "canonical", "claims", "design", "parse",
           "registry", "unavailable"]
