"""What every variant is: a name, the claim it is tested against, what it needs, how it is
applied, and how it proves it is active."""
from __future__ import annotations

import importlib.util

import torch

from ..errors import UserError


class NotApplicable(UserError):
    """The variant cannot run here; the reason says what is missing. Never a silent fallback."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name} is not applicable here: {reason}")
        self.name, self.reason = name, reason


class Variant:
    """Subclass and override `apply` and `evidence` (and `check` for extra requirements).

    `requires` lists human-readable requirements; the ones named "CUDA" and "package X" are
    checked automatically. `env` holds environment variables the variant's process must have
    before torch starts CUDA (the runner sets them first). `lossless` variants must give the
    baseline's tokens for the same seed; tests hold them to it.
    """
    name: str = ""
    claim: str = ""
    requires: tuple[str, ...] = ()
    lossless: bool = False
    conflicts: tuple[str, ...] = ()
    env: dict[str, str] = {}

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

    def apply(self, pipeline) -> None:
        raise NotImplementedError

    def after_load(self, pipeline) -> None:
        """Runs once after `apply`, inside the timed load (warm-up routines live here)."""

    def evidence(self, pipeline) -> dict:
        """Proof that the variant is active, read from the live pipeline after a synthesis:
        kernel names, dtypes, module types and counts. Must not be empty when applied."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "claim": self.claim, "requires": list(self.requires),
                "lossless": self.lossless}


def dtypes_of(module: torch.nn.Module) -> dict[str, int]:
    """Parameter count per dtype: the plain evidence of a precision change."""
    counts: dict[str, int] = {}
    for p in module.parameters():
        name = str(p.dtype).replace("torch.", "")
        counts[name] = counts.get(name, 0) + p.numel()
    return counts
