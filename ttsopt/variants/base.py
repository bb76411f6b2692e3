"""What every variant is: a name, the claims it is tested against (as data), what it needs, the
design its measurement needs, how it is applied, and how it proves it was active and engaged."""
from __future__ import annotations

import importlib.util

import torch

from ..core.claims import Claim
from ..core.errors import UserError
from ..core.vocab import Design
from ..measure.env import cpu_flags


class NotApplicable(UserError):
    """The variant cannot run here; the reason says what is missing. Never a silent fallback."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name} is not applicable here: {reason}")
        self.name, self.reason = name, reason


class Variant:
    """Subclass and override `apply`, `evidence` and `engaged` (and `check` for extra requirements).

    - `claims`: what the optimization is claimed to do, each on its own metric (`core.claims`).
    - `requires`: human-readable requirements; "CUDA" and "package X" are checked automatically.
    - `env`: environment variables its process must have before torch starts CUDA.
    - `design`: `Design.CROSS_PROCESS` when it changes process-wide state (allocator settings,
      environment variables) or its claim is about a fresh process (cold start); `design_reason`
      says which. Otherwise it is measured beside a baseline copy in one process.
    - `lossless`: must give the baseline's tokens for the same seed; tests hold it to that.
    - `aliases`: other names that select it.
    - `models`: the models of the Chatterbox family it is made and tested for; on another it is
      not applicable, with `not_for[model]` (or a plain default) saying why. By default the
      original and the multilingual model: the multilingual one is the original's architecture
      (Llama T3, the same S3Gen) with a larger text vocabulary and upstream's alignment analyzer.
    `apply` returns the application's own state (counters, handles): the pipeline carries no
    variant's attributes, and `evidence` reads the state back.
    """
    name: str = ""
    claims: tuple[Claim, ...] = ()
    requires: tuple[str, ...] = ()
    lossless: bool = False
    conflicts: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    env: dict[str, str] = {}
    design: Design = Design.IN_PROCESS
    design_reason: str = "changes only its own copy of the model and pipeline"
    models: tuple[str, ...] = ("original", "multilingual")
    not_for: dict[str, str] = {}

    def applies_to(self, model: str) -> str | None:
        """Why this variant is not for MODEL, or None."""
        if model in self.models:
            return None
        return self.not_for.get(model) or (f"made and tested for the {' and '.join(self.models)} model; "
                                           f"the {model} model's code differs where it acts")

    def check(self, pipeline=None) -> str | None:
        """Why this variant cannot run here, or None. With no pipeline only the cheap checks run
        (CUDA, packages), so a suite can skip a variant before loading any model."""
        for req in self.requires:
            if req == "CUDA" and not torch.cuda.is_available():
                return "requires CUDA (this machine has none)"
            if req.startswith("package "):
                pkg = req.split()[1]
                if importlib.util.find_spec(pkg.replace("-", "_")) is None:
                    return f"requires the {pkg} package, which is not installed"
        if pipeline is not None and "CUDA" in self.requires and pipeline.device.type != "cuda":
            return f"requires CUDA; the model runs on {pipeline.device}"
        return None

    def apply(self, pipeline):
        """Change PIPELINE in place; return this application's state (any object)."""
        raise NotImplementedError

    def after_load(self, pipeline, state) -> None:
        """Runs once after `apply`, inside the timed load (warm-up routines live here)."""

    def evidence(self, pipeline, state) -> dict:
        """What the variant shows of itself after running: kernel names, dtypes, module types,
        counters. Must not be empty."""
        raise NotImplementedError

    def engaged(self, evidence: dict) -> tuple[bool, str]:
        """Whether EVIDENCE shows the variant actually changed the work done in this regime, and why.
        Applied but idle (a stream of one chunk, a conversion no call reached) is not engaged."""
        if "active" in evidence:
            return bool(evidence["active"]), str(evidence.get("reason", "its evidence says active"
                                                              if evidence["active"] else "its evidence says inactive"))
        return bool(evidence), "evidence recorded" if evidence else "no evidence"

    def describe(self) -> dict:
        return {"name": self.name, "claims": [c.text for c in self.claims], "requires": list(self.requires),
                "lossless": self.lossless, "design": str(self.design), "aliases": list(self.aliases),
                "models": list(self.models)}


def native_units(pipeline, units: tuple[str, ...], dtype: torch.dtype) -> dict:
    """Evidence for a variant computing in DTYPE on PIPELINE's CPU: which of UNITS (the CPU flags of
    native DTYPE arithmetic) this CPU has, and a warning where it has none, so an emulated run says
    so; nothing off a CPU."""
    if pipeline.device.type != "cpu":
        return {}
    have = [f for f in units if f in cpu_flags()]
    ev: dict = {"cpu_native_units": have}
    if not have:
        ev["warning"] = (f"this CPU has none of {', '.join(units)}: {str(dtype).replace('torch.', '')} "
                         "arithmetic is emulated")
    return ev


def dtypes_of(module: torch.nn.Module) -> dict[str, int]:
    """Parameter count per dtype: the plain evidence of a precision change."""
    counts: dict[str, int] = {}
    for p in module.parameters():
        name = str(p.dtype).replace("torch.", "")
        counts[name] = counts.get(name, 0) + p.numel()
    return counts


def lean_runner(pipeline, variant: str):
    """The pipeline's LeanT3, put in place of upstream's runner on first use. Keeps an analyzer
    factory already set, so the T3 variants apply in any order."""
    from ..engine.t3.lean import LeanT3
    from ..engine.t3.upstream import UpstreamT3
    current = pipeline.t3
    if isinstance(current, LeanT3):
        return current
    if type(current) is not UpstreamT3:
        raise NotApplicable(variant, f"T3 is already run by {type(current).__name__}, "
                            "which the T3 variants do not configure")
    lean = LeanT3(current.t3)
    lean.analyzer_factory = current.analyzer_factory
    pipeline.replace("t3", lean, by=variant)
    return lean
