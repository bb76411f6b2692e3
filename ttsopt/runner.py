"""One variant run: load, cold call, warm-up, trials, fidelity — every step a record.

`execute(cfg)` runs in the current process (a notebook kernel, a test); `run_isolated(cfg)`
runs it in a fresh Python process, so that one variant's allocator state, compiled kernels
or crash never touch another's. Either way a failure ends as a `failed` record with its
reason, and every record written before it stays.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import env as env_mod
from . import fidelity, models, profiles, variants
from .audio import write_wav
from .errors import UserError
from .memory import track
from .pipeline import Pipeline
from .results import Store, completed_keys
from .timing import wall_timer


_TYPES = {"str": str, "int": int, "bool": bool}


@dataclass
class RunConfig:
    out_dir: str
    variant: str = variants.BASELINE
    role: str = "variant"            # baseline | aa | variant
    source: str = "tiny"
    device: str = "auto"
    dtype: str = "float32"
    profile: str = "smoke"
    prompts_csv: str = str(profiles.PROMPTS_CSV)
    model_seed: int = 0
    run_id: str = ""
    reference_dir: str = ""          # the baseline's stored outputs; default OUT_DIR/reference
    save_audio: bool = True
    resume: bool = False             # skip trials this run_id already recorded ok (after a kill)

    def __post_init__(self):
        # Papermill and JSON hand these over untyped; a wrong type is named here, not deep in a run.
        for f in fields(self):
            value, expected = getattr(self, f.name), _TYPES[f.type]
            if type(value) is not expected:
                raise UserError(f"parameter {f.name} must be {expected.__name__}, got {value!r} "
                                f"({type(value).__name__})")
        if not self.run_id:
            self.run_id = run_id_for(self.variant, self.role)
        if not self.reference_dir:
            self.reference_dir = str(Path(self.out_dir) / "reference")


@dataclass
class RunSummary:
    run_id: str
    status: str                      # ok | failed | not applicable
    records: int = 0
    error: str = ""
    audio: list[str] = field(default_factory=list)


def run_id_for(variant: str, role: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", variant or variants.BASELINE)
    return name if role == "variant" else f"{role}-{name}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {str(exc).splitlines()[0]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class _Run:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.profile = profiles.get(cfg.profile)
        self.store = Store(cfg.out_dir, cfg.run_id)
        self.summary = RunSummary(cfg.run_id, "ok")
        self.base = {"run_id": cfg.run_id, "variant": cfg.variant, "role": cfg.role, "source": cfg.source,
                     "profile": cfg.profile}
        self.evidence = "{}"
        self.forced = True

    def write(self, **record) -> None:
        self.store.append({**self.base, "evidence": self.evidence, **record})
        self.summary.records += 1

    def fail(self, phase: str, reason: str, status: str = "failed", **keys) -> RunSummary:
        self.write(phase=phase, status=status, error=reason, **keys)
        self.summary.status, self.summary.error = status, reason
        return self.summary

    def synth_record(self, pipeline, prompt, seed, trial, phase) -> tuple[dict, object]:
        n = profiles.token_budget(self.profile, prompt["text"]) if self.forced else None
        with track(pipeline.device) as mem:
            out = pipeline.synthesize(prompt["text"], seed=seed, n_tokens=n)
        record = dict(phase=phase, status="ok", prompt_id=prompt["id"], category=prompt["category"], seed=seed,
                      trial=trial, n_tokens=out.n_tokens, audio_s=out.audio_s, wall_s=out.wall_s, rtf=out.rtf,
                      tokens_per_s=out.tokens_per_s, forced_tokens=n,
                      **{f"stage_{k}": v for k, v in out.stages.items()},
                      **{f"mem_{k}": v for k, v in mem.as_dict().items()},
                      **{f"x_{k}": v for k, v in out.extra.items()})
        return record, out


def execute(cfg: RunConfig) -> RunSummary:
    run = _Run(cfg)
    run.store.write_env(env_mod.capture(cfg.source))
    run.base["device"] = cfg.device
    try:
        chosen = variants.parse(cfg.variant)
        prompts = profiles.load_prompts(cfg.prompts_csv, run.profile.prompt_ids)
    except UserError as exc:
        return run.fail("load", str(exc))
    for v in chosen:
        os.environ.update(v.env)  # before the first CUDA call of this process
    reason = variants.unavailable(cfg.variant)
    if reason:
        return run.fail("load", reason, status="not applicable")
    try:
        return _measure(run, prompts)
    except variants.NotApplicable as exc:
        return run.fail("load", exc.reason, status="not applicable")
    except Exception as exc:  # anything else a variant does wrong ends this run, not the suite
        traceback.print_exc()
        return run.fail("load" if run.summary.records == 0 else "trial", _describe(exc))


def _measure(run: _Run, prompts: list[dict]) -> RunSummary:
    cfg, profile = run.cfg, run.profile
    device = models.resolve_device(cfg.device)
    with track(device) as mem, wall_timer(device) as t:
        model = models.load(cfg.source, device=cfg.device, dtype=cfg.dtype, seed=cfg.model_seed)
        pipeline = Pipeline(model)
        applied = variants.apply(pipeline, cfg.variant)
    run.base["device"] = str(model.device)
    run.forced = model.random_weights  # real weights keep their natural stop; lengths are recorded
    first = prompts[0]
    cold, _ = run.synth_record(pipeline, first, profile.seeds[0], 0, "cold")
    evidence = applied.evidence(pipeline)
    silent = [name for name, proof in evidence.items() if not proof]
    if silent:  # each variant of a composition must prove itself, not just one of them
        raise RuntimeError(f"{', '.join(silent)} applied but shows no evidence of being active")
    run.evidence = json.dumps(evidence, default=str, sort_keys=True)
    run.write(phase="load", status="ok", wall_s=t.seconds, x_model_load_s=model.load_s, x_pid=os.getpid(),
              **{f"mem_{k}": v for k, v in mem.as_dict().items()})
    run.write(**cold)
    for i in range(profile.warmup):
        record, _ = run.synth_record(pipeline, first, profile.seeds[0], i, "warmup")
        run.write(**record)
    audio_dir = Path(cfg.out_dir) / "audio" / cfg.run_id
    done = completed_keys(cfg.out_dir, cfg.run_id) if cfg.resume else set()
    for trial in range(profile.trials):
        for prompt in prompts:
            for seed in profile.seeds:
                if (cfg.variant, prompt["id"], seed, trial, "trial") in done:
                    continue
                record, out = run.synth_record(pipeline, prompt, seed, trial, "trial")
                if trial == 0:
                    record.update(_output_fidelity(run, prompt, seed, out))
                    if cfg.save_audio and seed == profile.seeds[0]:
                        path = write_wav(audio_dir / f"{prompt['id']}.wav", out.wav, out.sr)
                        run.summary.audio.append(str(path))
                        record["audio_path"] = str(path.relative_to(cfg.out_dir))
                run.write(**record)
    for prompt in prompts[:profile.fidelity_prompts]:
        _probe_fidelity(run, pipeline, prompt, profile.seeds[0])
    return run.summary


def _output_fidelity(run: _Run, prompt, seed, out) -> dict:
    if run.cfg.role == "baseline":
        fidelity.save_reference(run.cfg.reference_dir, prompt["id"], seed, out)
        return {}
    reference = fidelity.load_reference(run.cfg.reference_dir, prompt["id"], seed)
    if reference is None:
        return {"fid_note": "no baseline output stored for this prompt and seed"}
    return fidelity.compare_output(reference, out)


def _probe_fidelity(run: _Run, pipeline, prompt, seed) -> None:
    cfg = run.cfg
    reference = fidelity.load_reference(cfg.reference_dir, prompt["id"], seed)
    if reference is None:
        run.write(phase="fidelity", status="ok", prompt_id=prompt["id"], seed=seed,
                  fid_note="no baseline output stored for this prompt and seed")
        return
    probed = fidelity.probe(pipeline, prompt["text"], reference["tokens"], seed)
    if cfg.role == "baseline":
        fidelity.save_reference(cfg.reference_dir, prompt["id"], seed, _Stored(reference), probed)
        return
    run.write(phase="fidelity", status="ok", prompt_id=prompt["id"], category=prompt["category"], seed=seed,
              **fidelity.compare_probe(reference, probed))


class _Stored:
    """A stored reference dressed as a Synthesis, so probes can be added to it."""

    def __init__(self, reference: dict):
        self.tokens, self.raw_tokens = reference["tokens"], reference["raw_tokens"]
        self.wav = reference["wav"].numpy()


# --- isolation -------------------------------------------------------------------------
def record_failure(cfg: RunConfig, reason: str, status: str = "failed") -> None:
    """Written by the parent when the child process itself died, or was never started because the
    variant cannot run here (status "not applicable"): nothing else would say so."""
    Store(cfg.out_dir, cfg.run_id).append({"run_id": cfg.run_id, "variant": cfg.variant, "role": cfg.role,
                                           "source": cfg.source, "profile": cfg.profile, "phase": "load",
                                           "status": status, "error": reason})


def run_isolated(cfg: RunConfig, timeout_s: float | None = None) -> RunSummary:
    """Run CFG in a fresh Python process; a crash, a kill or a time-out becomes a failed record."""
    timeout_s = timeout_s or profiles.get(cfg.profile).time_limit_s
    try:
        proc = subprocess.run([sys.executable, "-m", "ttsopt.runner", json.dumps(asdict(cfg))],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        reason = f"timed out after {timeout_s:.0f} s"
        record_failure(cfg, reason)
        return RunSummary(cfg.run_id, "failed", error=reason)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        reason = f"process exited with code {proc.returncode}" + (f": {tail}" if tail else "")
        record_failure(cfg, reason)
        return RunSummary(cfg.run_id, "failed", error=reason)
    return RunSummary(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    summary = execute(RunConfig(**json.loads(argv[0])))
    print(json.dumps(asdict(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
