"""One run — a variant, or the baseline again (A/A), against the baseline — by its design.

- In one process (`Design.IN_PROCESS`): a baseline copy and the variant are loaded side by side
  and their trials interleaved in pairs, A B then B A, so drift and the process's own offset hit
  both sides alike and each pair is one replicate. For variants that change nothing outside
  their own copy of the model and pipeline.
- Across processes (`Design.CROSS_PROCESS`): rounds of a fresh baseline process and a fresh
  variant process, in alternating order (B V, V B, ...); each round is one replicate. For
  variants that change process-wide state, and claims about a fresh process (cold start).

`execute(cfg)` runs a whole run: in this process, or as the parent of its processes
(`python -m ttsopt process CONFIG`, `execute_process`). Every step is a record; a failure ends as
a `failed` record with its reason, and every record written before it stays.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from .. import variants
from ..core import claims as claims_mod
from ..core import params
from ..core.errors import UserError
from ..core.records import Store, TrialRecord, completed_keys
from ..core.vocab import Design, Phase, Role, Side, Status
from ..engine import sources
from ..engine.audio import write_wav
from ..engine.pipeline import Pipeline
from ..measure import env as env_mod
from ..measure import fidelity, guard, memory, quality, weights
from ..measure.timing import StageTimes, wall_timer
from . import probes, profiles

_TYPES = {"str": str, "int": int, "bool": bool}


@dataclass
class RunConfig:
    out_dir: str
    variant: str = variants.BASELINE
    role: str = Role.VARIANT         # aa (the baseline again) | variant
    source: str = "tiny"
    model: str = "original"          # which Chatterbox: original, turbo or multilingual
    device: str = "auto"
    dtype: str = "float32"
    profile: str = "smoke"
    prompts_csv: str = str(profiles.PROMPTS_CSV)
    model_seed: int = 0
    run_id: str = ""
    design: str = ""                 # empty: the design the variant needs
    reference_dir: str = ""          # the reference run's stored baseline outputs; default OUT_DIR/reference
    save_audio: bool = True
    resume: bool = False             # skip pairs this run already recorded ok (after a kill)
    suite_position: int = -1
    process_timeout_s: int = 0       # cross-process: the limit per process; 0: the profile's time limit
    side: str = ""                   # set for one process of a cross-process run ...
    round: int = -1                  # ... with its round
    process: int = 0                 # and its number within the run

    def __post_init__(self):
        # Papermill and JSON hand these over untyped; a wrong type is named here, not deep in a run.
        for f in fields(self):
            value, expected = getattr(self, f.name), _TYPES[f.type]
            if expected is str and isinstance(value, str):  # an enum member: stored as its plain value
                value = str(value)
                setattr(self, f.name, value)
            if type(value) is not expected:
                raise UserError(f"parameter {f.name} must be {expected.__name__}, got {value!r} "
                                f"({type(value).__name__})")
        if self.role not in tuple(Role):
            raise UserError(f"parameter role must be one of {', '.join(Role)}, got {self.role!r}")
        if self.design and self.design not in tuple(Design):
            raise UserError(f"parameter design must be empty or one of {', '.join(Design)}, got {self.design!r}")
        self._check_values()
        if not self.run_id:
            self.run_id = run_id_for(self.variant, self.role, self.design)
        if not self.reference_dir:
            self.reference_dir = str(Path(self.out_dir) / "reference")

    def _check_values(self) -> None:
        """Refuse a value no run could use before anything is written: a notebook run with
        `-p variant nosuch` fails at its first cell instead of recording a failed run."""
        params.check("source", self.source, params.source)
        params.check("model", self.model, params.model)
        params.check("device", self.device, params.device)
        params.check("dtype", self.dtype, params.dtype)
        for name in ("model_seed", "process_timeout_s"):
            params.check(name, getattr(self, name), params.count)
        params.check("variant", self.variant, variants.design)
        profile = params.check("profile", self.profile, profiles.get)
        params.check("prompts_csv", self.prompts_csv, lambda path: profiles.check_languages(
            profiles.prompts_for(profile, path), self.model, path))


@dataclass
class RunSummary:
    run_id: str
    status: str                      # vocab.Status
    records: int = 0
    error: str = ""
    audio: list[str] = field(default_factory=list)


def run_id_for(variant: str, role: str, design: str = "") -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", variant or variants.BASELINE)
    if role == Role.AA:
        return f"aa-{design or Design.IN_PROCESS}"
    return name


def _describe(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {str(exc).splitlines()[0]}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class _Run:
    """A run's shared fields, its store and its summary."""

    def __init__(self, cfg: RunConfig, design: str, profile: profiles.Profile | None = None):
        self.cfg, self.design = cfg, design
        self.profile = profile or profiles.get(cfg.profile)
        self.store = Store(cfg.out_dir, cfg.run_id)
        self.summary = RunSummary(cfg.run_id, Status.OK)
        self.device = "?"
        self.syntheses = 0  # in this process, in the order they ran

    def record(self, phase: str, side: str | None = None, **fields_) -> TrialRecord:
        cfg = self.cfg
        return TrialRecord(run_id=cfg.run_id, variant=cfg.variant, role=cfg.role, design=self.design, phase=phase,
                           side=side, process=cfg.process, round=cfg.round if cfg.round >= 0 else None,
                           source=cfg.source, model=cfg.model, device=self.device, profile=cfg.profile,
                           suite_position=cfg.suite_position if cfg.suite_position >= 0 else None, **fields_)

    def write(self, record: TrialRecord) -> None:
        self.store.append(record)
        self.summary.records += 1

    def fail(self, reason: str, status: str = Status.FAILED) -> RunSummary:
        self.write(self.record(Phase.LOAD, status=status, error=reason))
        self.summary.status, self.summary.error = status, reason
        return self.summary


# --- entry points ------------------------------------------------------------------------------
def execute(cfg: RunConfig) -> RunSummary:
    """Run CFG whole: in this process (in-process design) or as the parent of its processes."""
    spec_design, _ = variants.design(cfg.variant)  # a bad name was refused by RunConfig
    run = _Run(cfg, cfg.design or spec_design)
    run.store.write_env(env_mod.capture(cfg.source, cfg.model), process=cfg.process)
    reason = variants.unavailable(cfg.variant, model=cfg.model)
    if reason:
        return run.fail(reason, Status.NOT_APPLICABLE)
    try:
        prompts = profiles.prompts_for(run.profile, cfg.prompts_csv)
    except UserError as exc:
        return run.fail(str(exc))
    if run.design == Design.CROSS_PROCESS:
        return _cross_process(run)
    return _guarded(run, lambda: _in_process(run, prompts))


def execute_process(cfg: RunConfig) -> RunSummary:
    """One side of one round of a cross-process run, in this (fresh) process."""
    run = _Run(cfg, Design.CROSS_PROCESS)
    run.store.write_env(env_mod.capture(cfg.source, cfg.model), process=cfg.process)
    try:
        prompts = profiles.prompts_for(run.profile, cfg.prompts_csv)
    except UserError as exc:
        return run.fail(str(exc))
    return _guarded(run, lambda: _one_side(run, prompts))


def _guarded(run: _Run, body) -> RunSummary:
    try:
        return body()
    except variants.NotApplicable as exc:
        return run.fail(exc.reason, Status.NOT_APPLICABLE)
    except Exception as exc:  # anything a variant does wrong ends this run, not the suite
        traceback.print_exc()
        return run.fail(_describe(exc))


# --- pieces both designs use ------------------------------------------------------------------------
def _machine(load: guard.MachineLoad) -> dict:
    return {"machine_load": round(load.load1, 2), "busy_processes": load.others_json()}


def _load_side(run: _Run, side: str, spec: str):
    cfg = run.cfg
    device = sources.resolve_device(cfg.device)
    machine = guard.snapshot()
    with memory.track(device, "load") as mem, wall_timer(device) as t:
        model = sources.load(cfg.source, device=cfg.device, dtype=cfg.dtype, seed=cfg.model_seed, model=cfg.model)
        pipeline = Pipeline(model)
        applied = variants.apply(pipeline, spec)
    run.device = str(model.device)
    param_mb = weights.as_metrics({"t3": model.t3, "s3gen": model.s3gen, "ve": model.tts.ve})
    extra = {"model_load_s": model.load_s, "variants_s": json.dumps(applied.seconds), "pid": os.getpid()}
    run.write(run.record(Phase.LOAD, side, wall_s=t.seconds, claims=claims_mod.dumps(variants.claims(spec)),
                         mem={**mem.as_dict(), **param_mb}, extra=extra, **_machine(machine)))
    return pipeline, applied


def _stream_trial(run: _Run, side: str, pipeline, prompt_id: str, text: str, seed: int, n_tokens: int | None,
                  trial: int | None, first_chunk_tokens: int | None = None,
                  phase: str = Phase.STREAM) -> TrialRecord:
    """One streamed synthesis (`engine.stream`) as a record of PHASE (`stream`, or `warmup` for one
    no statistic reads): its first audio, chunks and the RTF of the rest. Pair = trial, so both
    sides' streams pair like trials."""
    from ..engine.stream import synthesize_stream
    out = synthesize_stream(pipeline, text, seed=seed, n_tokens=n_tokens, first_chunk_tokens=first_chunk_tokens)
    return run.record(phase, side, prompt_id=prompt_id, seed=seed, trial=trial, pair=trial, wall_s=out.wall_s,
                      audio_s=out.audio_s, n_tokens=int(out.tokens.numel()), forced_tokens=n_tokens,
                      extra={"first_audio_s": out.first_audio_s, "chunks": len(out.chunks),
                             "chunk_tokens": out.chunk_tokens, "first_chunk_tokens": out.first_chunk_tokens,
                             "rest_rtf": out.rest_rtf,
                             "prompt_frames": out.prompt_frames,
                             **{f"first_{part}": s for part, s in out.first_parts.items()}})


def _synth(run: _Run, side: str, pipeline, prompt: dict, seed: int, phase: str, n: int | None, **keys):
    timer = StageTimes(pipeline.device)
    with memory.track(pipeline.device, "synth") as mem:
        out = pipeline.synthesize(_spoken(pipeline, prompt), seed=seed, n_tokens=n, timer=timer)
    record = run.record(phase, side, prompt_id=prompt["id"], category=prompt["category"], seed=seed,
                        n_tokens=out.n_tokens, forced_tokens=n, t3_forwards=out.t3_forwards, audio_s=out.audio_s,
                        wall_s=out.wall_s, rtf=out.rtf, tokens_per_s=out.tokens_per_s, stages=out.stages,
                        mem=mem.as_dict(), extra={**out.extra, "sequence": run.syntheses}, **keys)
    run.syntheses += 1
    return record, out


def voice_reference(baseline) -> tuple | None:
    """(VoiceEncoder, speaker embedding) for Chatterbox's own speaker space: the baseline's encoder
    (one instrument for both sides) and the embedding of the voice both were asked to speak; None
    when the model holds no voice."""
    conds = baseline.model.tts.conds
    if conds is None or getattr(conds.t3, "speaker_emb", None) is None:
        return None
    return baseline.model.tts.ve, conds.t3.speaker_emb


def _voice(baseline, out) -> dict:
    """The voice of clip OUT in Chatterbox's own speaker space (`voice_reference`)."""
    reference = voice_reference(baseline)
    if reference is None:
        return {}
    encoder, speaker = reference
    return {"voice_similarity_chatterbox": quality.chatterbox_similarity(encoder, out.wav, out.sr, speaker)}


def _spoken(pipeline, prompt: dict) -> str:
    """PROMPT's text, with the pipeline set to speak its language (the prompts CSV's column)."""
    pipeline.language = prompt.get("language") or "en"
    return prompt["text"]


def _length(run: _Run, pipeline, prompt: dict) -> int | None:
    # Real weights keep their natural stop; random ones never stop, so every run forces one length.
    return profiles.token_budget(run.profile, prompt["text"]) if pipeline.model.random_weights else None


def _save_audio(run: _Run, record: TrialRecord, out, side: str) -> None:
    cfg = run.cfg
    folder = Path(cfg.out_dir) / "audio" / cfg.run_id / (side if run.design == Design.IN_PROCESS else "")
    path = write_wav(folder / f"{record.prompt_id}.wav", out.wav, out.sr)
    run.summary.audio.append(str(path))
    record.audio_path = str(path.relative_to(cfg.out_dir))


def _evidence(run: _Run, pipeline, applied) -> None:
    evidence = applied.evidence(pipeline)
    silent = [name for name, proof in evidence.items() if not proof]
    if silent:  # each variant of a composition must show itself, not just one of them
        raise RuntimeError(f"{', '.join(silent)} applied but shows no evidence at all")
    engaged, why = applied.engaged(evidence)
    run.write(run.record(Phase.EVIDENCE, Side.VARIANT, evidence=json.dumps(evidence, default=str, sort_keys=True),
                         engaged=engaged, engaged_reason=why, **_machine(guard.snapshot())))


# --- in one process ----------------------------------------------------------------------------------
def _in_process(run: _Run, prompts: list[dict]) -> RunSummary:
    base, var, applied = measure_pairs(run, prompts)
    _evidence(run, var, applied)
    return run.summary


def measure_pairs(run: _Run, prompts: list[dict]):
    """Both sides loaded in this process, their warm-ups, the interleaved pairs and the fidelity
    probes, all written to RUN's store. Returns (baseline pipeline, variant pipeline, applied)."""
    cfg, profile = run.cfg, run.profile
    base, _ = _load_side(run, Side.BASELINE, variants.BASELINE)
    var, applied = _load_side(run, Side.VARIANT, cfg.variant)
    sides = {Side.BASELINE: base, Side.VARIANT: var}
    for side, pipeline in sides.items():  # first calls, excluded: lazy initialisation of each copy
        n = _length(run, pipeline, prompts[0]) if profile.warmup_tokens is None else profile.warmup_tokens
        record, _ = _synth(run, side, pipeline, prompts[0], profile.seeds[0], Phase.WARMUP, n)
        run.write(record)
    done = completed_keys(cfg.out_dir, cfg.run_id) if cfg.resume else set()
    tokens = {}
    pairs = [(p, s, t) for t in range(profile.trials) for p in prompts for s in profile.seeds]
    for i, (prompt, seed, trial) in enumerate(pairs):
        if all((cfg.run_id, cfg.process, side, prompt["id"], seed, trial, Phase.TRIAL) in done for side in sides):
            continue
        out = _pair(run, sides, prompt, seed, trial, i)
        tokens[(prompt["id"], seed)] = out.tokens
    for prompt in prompts[:profile.fidelity_prompts]:
        key = (prompt["id"], profile.seeds[0])
        if key in tokens:
            _probe_pair(run, base, var, prompt, profile.seeds[0], tokens[key])
    return base, var, applied


def _pair(run: _Run, sides: dict, prompt: dict, seed: int, trial: int, index: int):
    """One replicate: both sides on the same input, A B on even pairs and B A on odd ones."""
    order = (Side.BASELINE, Side.VARIANT) if index % 2 == 0 else (Side.VARIANT, Side.BASELINE)
    results = {}
    for side in order:
        n = _length(run, sides[side], prompt)
        results[side] = _synth(run, side, sides[side], prompt, seed, Phase.TRIAL, n, trial=trial, pair=index)
    (b_rec, b_out), (v_rec, v_out) = results[Side.BASELINE], results[Side.VARIANT]
    v_rec.fid.update(fidelity.compare_output(b_out.tokens, b_out.wav, v_out.tokens, v_out.wav))
    if trial == 0 and not sides[Side.BASELINE].model.random_weights:  # after both are timed
        text = prompt["text"] if prompt.get("language", "en") == "en" else None  # the recogniser is English
        for rec, out in ((b_rec, b_out), (v_rec, v_out)):
            rec.quality.update(quality.as_record({**quality.score(out.wav, out.sr, text=text),
                                                  **_voice(sides[Side.BASELINE], out)}))
    if trial == 0 and seed == run.profile.seeds[0] and run.cfg.save_audio:
        _save_audio(run, b_rec, b_out, Side.BASELINE)
        _save_audio(run, v_rec, v_out, Side.VARIANT)
    if trial == 0 and run.cfg.role == Role.AA:  # the reference other runs' processes compare with
        probes.save_reference(run.cfg.reference_dir, prompt["id"], seed, b_out)
    run.write(b_rec)
    run.write(v_rec)
    return b_out


def _probe_pair(run: _Run, base, var, prompt: dict, seed: int, tokens) -> None:
    b = probes.probe(base, _spoken(base, prompt), tokens, seed)
    v = probes.probe(var, _spoken(var, prompt), tokens, seed, mel=b["mel"])
    metrics, notes = fidelity.compare_probe(b, v)
    if run.cfg.role == Role.AA:
        probes.add_probe(run.cfg.reference_dir, prompt["id"], seed, b)
    run.write(run.record(Phase.FIDELITY, Side.VARIANT, prompt_id=prompt["id"], category=prompt["category"],
                         seed=seed, fid=metrics, extra=notes))


# --- across processes ------------------------------------------------------------------------------
def _cross_process(run: _Run) -> RunSummary:
    """The parent: B V, V B, ... one fresh process each; stops at the first process that fails."""
    cfg, profile = run.cfg, run.profile
    timeout = cfg.process_timeout_s or profile.time_limit_s
    number = 0
    for r in range(profile.rounds):
        for side in ((Side.BASELINE, Side.VARIANT) if r % 2 == 0 else (Side.VARIANT, Side.BASELINE)):
            number += 1
            child = replace(cfg, side=side, round=r, process=number, design=Design.CROSS_PROCESS)
            status, reason = spawn(child, timeout)
            if status != Status.OK:
                run.summary.status, run.summary.error = status, reason
                return run.summary
            run.summary.records = len(completed_keys(cfg.out_dir, cfg.run_id))
    return run.summary


def spawn(cfg: RunConfig, timeout_s: float) -> tuple[str, str]:
    """Run one process of a cross-process run; a crash, a kill or a time-out becomes a failed record."""
    env = dict(os.environ)
    if cfg.side == Side.VARIANT:
        for v in variants.parse(cfg.variant):
            env.update(v.env)  # before torch starts CUDA in that process
    try:
        proc = subprocess.run([sys.executable, "-m", "ttsopt", "process", json.dumps(asdict(cfg))],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        reason = f"{cfg.side} process of round {cfg.round} timed out after {timeout_s:.0f} s"
        record_failure(cfg, reason)
        return Status.FAILED, reason
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        reason = f"{cfg.side} process of round {cfg.round} exited with code {proc.returncode}"
        reason += f": {tail}" if tail else ""
        record_failure(cfg, reason)
        return Status.FAILED, reason
    summary = RunSummary(**json.loads(proc.stdout.strip().splitlines()[-1]))
    return summary.status, summary.error


def _one_side(run: _Run, prompts: list[dict]) -> RunSummary:
    cfg, profile = run.cfg, run.profile
    spec = cfg.variant if cfg.side == Side.VARIANT else variants.BASELINE
    pipeline, applied = _load_side(run, cfg.side, spec)
    first = prompts[0]
    record, _ = _synth(run, cfg.side, pipeline, first, profile.seeds[0], Phase.COLD, _length(run, pipeline, first))
    run.write(record)
    for trial in range(profile.cross_trials):
        for seed in profile.seeds:
            record, out = _synth(run, cfg.side, pipeline, first, seed, Phase.TRIAL, _length(run, pipeline, first),
                                 trial=trial)
            reference = probes.load_reference(cfg.reference_dir, first["id"], seed)
            if cfg.side == Side.VARIANT and reference is not None:
                record.fid.update(fidelity.compare_output(reference["tokens"], reference["wav"].numpy(),
                                                          out.tokens, out.wav))
            if cfg.save_audio and trial == 0 and seed == profile.seeds[0] and cfg.round == 0:
                _save_audio(run, record, out, cfg.side)
            run.write(record)
    if cfg.side == Side.VARIANT:
        if cfg.round == 0:
            _probe_reference(run, pipeline, prompts[:profile.fidelity_prompts], profile.seeds[0])
        _evidence(run, pipeline, applied)
    return run.summary


def _probe_reference(run: _Run, pipeline, prompts: list[dict], seed: int) -> None:
    for prompt in prompts:
        reference = probes.load_reference(run.cfg.reference_dir, prompt["id"], seed)
        if reference is None or "mel" not in reference:
            continue  # no reference run in this results directory: fidelity is not measured
        probed = probes.probe(pipeline, _spoken(pipeline, prompt), reference["tokens"], seed, mel=reference["mel"])
        metrics, notes = fidelity.compare_probe(reference, probed)
        run.write(run.record(Phase.FIDELITY, Side.VARIANT, prompt_id=prompt["id"], category=prompt["category"],
                             seed=seed, fid=metrics, extra=notes))


def record_failure(cfg: RunConfig, reason: str, status: str = Status.FAILED) -> None:
    """Written by a parent when the process it ran died, or was never started because the variant
    cannot run here: nothing else would say so."""
    design = cfg.design or variants.design(cfg.variant)[0] if status != Status.NOT_APPLICABLE else cfg.design
    Store(cfg.out_dir, cfg.run_id).append(TrialRecord(
        run_id=cfg.run_id, variant=cfg.variant, role=cfg.role, design=design or None, phase=Phase.LOAD,
        status=status, error=reason, side=cfg.side or None, process=cfg.process,
        round=cfg.round if cfg.round >= 0 else None, source=cfg.source, model=cfg.model, profile=cfg.profile,
        suite_position=cfg.suite_position if cfg.suite_position >= 0 else None))
