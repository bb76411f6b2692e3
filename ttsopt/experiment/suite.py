"""The batch suite: the reference A/A run first, then every variant (and, where a variant needs
that design, an A/A across processes) in a seeded random order, each in a fresh Jupyter kernel.

Each run executes notebooks/experiment.ipynb through papermill, so the executed notebook is the
record of what ran and the run's page in the report. The reference run is the baseline against
a copy of itself in one process: it measures the in-process design's noise, stores the
baseline's outputs for fidelity, and times the baseline, from which every later run's time limit
follows. If it fails, nothing can be compared and the suite stops at once. Any other run that
raises, times out, or kills its kernel becomes a `failed` record with its reason and the suite
goes on; a variant whose cheap check fails here ("requires CUDA") is recorded as not
applicable without starting a kernel. The order is shuffled with a recorded seed, so slow drift
of the machine cannot line up with the alphabet; the report shows the drift.
"""
from __future__ import annotations

import logging
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import variants
from ..core import records
from ..core.errors import UserError, interruption
from ..core.vocab import Design, Phase, Role, Side, Status
from ..engine import sources
from ..measure import guard
from . import folder, profiles, runner
from .runner import RunConfig

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "experiment.ipynb"
# jupyter_client starts a kernelspec whose argv[0] is "python" with the interpreter that runs
# papermill, so "python3" is always this environment's Python — no kernelspec install needed.
KERNEL = "python3"
# A kernel's own stderr (ipykernel's start-up warnings, messages that C++ libraries print, its
# log) goes to DIR/logs/<run_id>.kernel.log, not to the terminal: it says nothing about the run
# unless the kernel dies, and then nbclient reports it and the log is there to read.
KERNEL_LOGS = "logs"
NO_RECORDS = "the notebook finished without writing any record"
SKIPPED = "skipped"
# A run may take this many times what the same work takes the baseline before it is stopped.
TIME_LIMIT_FACTOR = 10
KERNEL_START_S = 60  # a kernel's (or process's) start and imports, on top of the work


class SuiteStopped(UserError):
    """The reference run failed: nothing can be compared, so the suite stops."""


class SuiteInterrupted(Exception):
    """Ctrl-C or SIGTERM arrived during a run: that run is recorded as failed, the rest not started."""

    def __init__(self, outcomes: list, run_id: str, signal_name: str, exit_code: int):
        super().__init__(f"{signal_name} during {run_id}")
        self.outcomes, self.run_id, self.signal_name, self.exit_code = outcomes, run_id, signal_name, exit_code


INTERRUPTED = "interrupted before it finished"


@dataclass
class Outcome:
    run_id: str
    status: str          # vocab.Status, or "skipped" (already complete, --resume)
    reason: str = ""
    seconds: float = 0.0


def resolve_names(spec: str) -> list[str]:
    """`all` is every registered variant; otherwise a comma-separated list of specs (a+b allowed)."""
    if spec.strip() == "all":
        return list(variants.registry())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return [variants.canonical(n) for n in names if variants.canonical(n) != variants.BASELINE]


def plan(source: str, names: list[str], profile: str, out_dir, device: str = "auto",
         prompts_csv: str = str(profiles.PROMPTS_CSV), order_seed: int = 0, model: str = "original") -> list[RunConfig]:
    """The reference A/A first; then NAMES and, if one of them needs it here, the cross-process A/A,
    in an order shuffled by ORDER_SEED. Every name is checked before any run starts."""
    out_dir = str(Path(out_dir).resolve())
    common = dict(out_dir=out_dir, source=source, model=model, device=device, profile=profile,
                  prompts_csv=prompts_csv)
    reference = RunConfig(role=Role.AA, design=Design.IN_PROCESS, **common)
    rest = [RunConfig(variant=name, **common) for name in names]
    crossing = [r for r in rest if variants.design(r.variant)[0] == Design.CROSS_PROCESS
                and not variants.unavailable(r.variant, model=model)]
    if crossing:
        rest.append(RunConfig(role=Role.AA, design=Design.CROSS_PROCESS, **common))
    random.Random(order_seed).shuffle(rest)
    runs = [replace(r, suite_position=i) for i, r in enumerate([reference, *rest])]
    ids = [r.run_id for r in runs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"two runs would share the id {', '.join(twice)}: name each variant once")
    return runs


def _records(cfg: RunConfig) -> list[dict]:
    return records.read(Path(cfg.out_dir) / f"{cfg.run_id}.jsonl")


def run_status(cfg: RunConfig) -> tuple[str, str]:
    """(status, reason) of a finished run, read back from its records."""
    rows = _records(cfg)
    return records.run_status(rows) if rows else (Status.FAILED, NO_RECORDS)


def finished_ok(cfg: RunConfig) -> bool:
    """True when every trial of CFG's profile is stored ok, its evidence too, and nothing failed."""
    rows = _records(cfg)
    if not rows or {r.get("status") for r in rows} != {Status.OK}:
        return False
    p = profiles.get(cfg.profile)
    cross = (cfg.design or variants.design(cfg.variant)[0]) == Design.CROSS_PROCESS
    expected = p.rounds * 2 * p.cross_trials * len(p.seeds) if cross else 2 * len(
        profiles.prompts_for(p, cfg.prompts_csv)) * len(p.seeds) * p.trials
    trials = sum(r.get("phase") == Phase.TRIAL for r in rows)
    return trials >= expected and any(r.get("phase") == Phase.EVIDENCE for r in rows)


def set_aside(cfg: RunConfig) -> None:
    """Move an unfinished run's records out of the store before it runs again, so the report
    never mixes two attempts; they stay on disk under superseded/ for whoever wants them."""
    for suffix in (".jsonl", ".env.json"):
        path = Path(cfg.out_dir) / f"{cfg.run_id}{suffix}"
        if path.exists():
            old = Path(cfg.out_dir) / "superseded"
            old.mkdir(exist_ok=True)
            path.rename(old / f"{cfg.run_id}.{time.time_ns()}{suffix}.old")


def execute_in_kernel(cfg: RunConfig, profiling: bool, timeout_s: float, notebook=NOTEBOOK) -> tuple[str, str]:
    """Run CFG through NOTEBOOK in a fresh kernel; every way it can go wrong ends as a record."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out = Path(cfg.out_dir) / "notebooks" / f"{cfg.run_id}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = dict(variant=cfg.variant, role=cfg.role, design=cfg.design, source=cfg.source, model=cfg.model,
                      device=cfg.device,
                      profile=cfg.profile, out_dir=cfg.out_dir, run_id=cfg.run_id, profiling=profiling,
                      prompts_csv=cfg.prompts_csv, suite_position=cfg.suite_position,
                      process_timeout_s=cfg.process_timeout_s)
    try:
        papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name=KERNEL,
                                   execution_timeout=int(timeout_s + 0.999), progress_bar=False,
                                   cwd=str(Path(notebook).resolve().parent),
                                   kernel_manager_class=logged_kernel_manager(
                                       Path(cfg.out_dir) / KERNEL_LOGS / f"{cfg.run_id}.kernel.log"))
    except CellTimeoutError:
        reason = f"timed out: a notebook cell ran longer than the {timeout_s:.0f} s limit"
    except DeadKernelError:
        reason = "the kernel died (killed by the system, often for running out of memory, or crashed)"
    except papermill.PapermillExecutionError as exc:
        reason = f"notebook error in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel did not start, the notebook could not be written, ...
        reason = f"could not run the notebook: {type(exc).__name__}: {str(exc).strip()[:300]}"
        if out.is_file() and out.stat().st_size == 0:  # a full disk leaves no empty notebook behind
            out.unlink()
    else:
        status, reason = run_status(cfg)
        if reason != NO_RECORDS:
            return status, reason
    runner.record_failure(cfg, reason)
    return Status.FAILED, reason


def logged_kernel_manager(log_path: Path):
    """A kernel manager class whose kernels write their stderr to LOG_PATH."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_start_kernel(self, **kw):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:  # the kernel holds its own copy of the descriptor
                kw.setdefault("stderr", log)
                return await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

    return LoggedKernelManager


def prepare_weights(runs: list[RunConfig], say=print) -> None:
    """Build the random weights the runs will load once, in a process of its own, before the
    first run: otherwise the first run's load would include the build and no other run's would.
    A failure here is only reported; each run then builds (or fails) on its own, on record."""
    root = sources.cache_root()
    if root is None:  # TTSOPT_CACHE=off: every run builds its own, as asked
        return
    for source, seed in sorted({(r.source, r.model_seed) for r in runs if r.source in ("synthetic", "tiny")}):
        say(f"suite: preparing {source} weights (built once, then cached in {root})")
        proc = subprocess.run([sys.executable, "-m", "ttsopt", "prepare", source, "--seed", str(seed)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            say(f"suite: could not prepare the {source} weights ({tail}); each run builds its own")


def time_limits(reference: RunConfig, cfg: RunConfig) -> tuple[float, int]:
    """(cell limit, per-process limit) for CFG from what the reference run measured: the baseline
    side's load and synthesis times, so a run may be TIME_LIMIT_FACTOR times slower than the
    baseline doing the same work before it is stopped. The profile's limit until then."""
    p = profiles.get(cfg.profile)
    rows = [r for r in _records(reference) if r.get("side") == Side.BASELINE and r.get("status") == Status.OK]
    synth = [r["wall_s"] for r in rows if r.get("phase") in (Phase.TRIAL, Phase.WARMUP) and r.get("wall_s")]
    load = [r["wall_s"] for r in rows if r.get("phase") == Phase.LOAD and r.get("wall_s")]
    if not synth or not load:
        return p.time_limit_s, p.time_limit_s
    s, ld = float(np.mean(synth)), float(np.max(load))
    per_process = KERNEL_START_S + TIME_LIMIT_FACTOR * (ld + (1 + p.cross_trials * len(p.seeds) + 2) * s)
    pairs = len(profiles.prompts_for(p, cfg.prompts_csv)) * len(p.seeds) * p.trials
    in_process = KERNEL_START_S + TIME_LIMIT_FACTOR * (2 * ld + (2 * pairs + 2 + 4 * p.fidelity_prompts) * s)
    cross = 2 * p.rounds * per_process + KERNEL_START_S
    design = cfg.design or variants.design(cfg.variant)[0]
    return (cross if design == Design.CROSS_PROCESS else in_process), int(per_process)


def check_machine(wait_quiet: bool, say=print, timeout_s: float = 3600) -> guard.MachineLoad:
    """Warn about (or wait out) other processes using the CPU: they would time themselves into ours."""
    load = guard.wait_quiet(timeout_s, say) if wait_quiet else guard.snapshot()
    if load.busy:
        say(f"warning: the machine is busy ({load.describe()}); timings taken now are not to be trusted "
            "and the report will flag them (--wait-quiet waits for it to calm down)")
    return load


def identity(runs: list[RunConfig]) -> dict:
    """What the suite's folder must hold for RUNS to be compared with its records."""
    first = runs[0]
    return folder.identity(first.profile, first.source, first.device, first.prompts_csv, first.model)


def run_suite(runs: list[RunConfig], *, resume: bool = False, profiling: bool = True, time_limit_s: float | None = None,
              notebook=NOTEBOOK, progress=True, wait_quiet: bool = False, order_seed: int = 0) -> list[Outcome]:
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    if not runs:
        return []
    out_dir = Path(runs[0].out_dir)
    ident = identity(runs)
    folder.check(out_dir, ident)  # `ttsopt run` checked (and with --force cleared) it already
    out_dir.mkdir(parents=True, exist_ok=True)
    folder.write_manifest(out_dir, ident, [r.run_id for r in runs], order_seed, resume)
    # The report shows prompt texts beside the audio; the records only name their ids.
    copy = out_dir / folder.PROMPTS_COPY
    if Path(runs[0].prompts_csv).resolve() != copy.resolve():
        shutil.copyfile(runs[0].prompts_csv, copy)
    prepare_weights(runs, say)
    check_machine(wait_quiet, say)
    outcomes = []
    bar = tqdm(runs, desc="suite", unit="run", file=sys.stderr, disable=not progress)
    for cfg in bar:
        bar.set_postfix_str(cfg.run_id)
        try:
            outcome = _one(cfg, runs[0], resume, profiling, time_limit_s, notebook, wait_quiet, say)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through errors.raise_on_sigterm
            bar.close()
            quiet_abandoned_kernel()
            stop_children()  # the run's kernel and its processes write nothing after the record below
            signal_name, code = interruption(exc)
            runner.record_failure(cfg, f"{INTERRUPTED} ({signal_name})")
            raise SuiteInterrupted(outcomes, cfg.run_id, signal_name, code) from None
        outcomes.append(outcome)
        bar.write(f"{cfg.run_id}: {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else "")
                  + f" in {outcome.seconds:.0f} s", file=sys.stderr)
        if cfg.role == Role.AA and cfg.suite_position == 0 and outcome.status not in (Status.OK, SKIPPED):
            raise SuiteStopped(f"the reference run ({cfg.run_id}) did not complete, so nothing can be "
                               f"compared: {outcome.reason}")
    return outcomes


def quiet_abandoned_kernel() -> None:
    """After an interruption the cut-off run's kernel is stopped on purpose; nbclient's pending
    task then reports "Kernel died" and asyncio prints that task's traceback at exit. Both say
    what the interruption record already says, so their loggers keep quiet from here on."""
    for name in ("asyncio", "papermill", "nbclient", "traitlets"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def stop_children(grace_s: float = 10.0) -> None:
    """Terminate this process's children (a run's kernel and the processes it started), then
    kill what is left after GRACE_S."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def _one(cfg, reference, resume, profiling, time_limit_s, notebook, wait_quiet, say) -> Outcome:
    start = time.monotonic()
    if resume and finished_ok(cfg):
        return Outcome(cfg.run_id, SKIPPED, "already complete")
    set_aside(cfg)
    reason = variants.unavailable(cfg.variant, model=cfg.model)
    if reason:
        runner.record_failure(cfg, reason, status=Status.NOT_APPLICABLE)
        return Outcome(cfg.run_id, Status.NOT_APPLICABLE, reason, time.monotonic() - start)
    if wait_quiet:
        check_machine(True, say)
    limit, per_process = time_limits(reference, cfg) if cfg is not reference else (None, 0)
    limit = time_limit_s or limit or profiles.get(cfg.profile).time_limit_s
    cfg = replace(cfg, process_timeout_s=int(time_limit_s or per_process))
    p = profiles.get(cfg.profile)
    profiled = profiling and (p.profiled == "all" or cfg.suite_position == 0)
    status, reason = execute_in_kernel(cfg, profiled, limit, notebook)
    return Outcome(cfg.run_id, status, reason, time.monotonic() - start)
