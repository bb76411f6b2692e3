"""The batch suite: baseline, baseline again (A/A), then every variant, each in a fresh kernel.

Each run executes notebooks/experiment.ipynb through papermill, so the executed notebook is
both the record of what ran and the run's page in the report. A run that raises, times out,
or kills its kernel becomes a `failed` record with its reason and the suite goes on; a
variant whose cheap check fails here ("requires CUDA") is recorded as not applicable
without starting a kernel at all.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import models, profiles, results, runner, variants
from .errors import UserError
from .runner import RunConfig

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "experiment.ipynb"
# jupyter_client starts a kernelspec whose argv[0] is "python" with the interpreter that runs
# papermill, so "python3" is always this environment's Python — no kernelspec install needed.
KERNEL = "python3"
NO_RECORDS = "the notebook finished without writing any record"


@dataclass
class Outcome:
    run_id: str
    status: str          # ok | failed | not applicable | skipped (already complete, --resume)
    reason: str = ""
    seconds: float = 0.0


def plan(source: str, names: list[str], profile: str, out_dir, device: str = "auto",
         prompts_csv: str = str(profiles.PROMPTS_CSV)) -> list[RunConfig]:
    """Baseline first (its outputs are every variant's fidelity reference), then A/A, then NAMES."""
    out_dir = str(Path(out_dir).resolve())
    common = dict(out_dir=out_dir, source=source, device=device, profile=profile, prompts_csv=prompts_csv)
    runs = [RunConfig(variant=variants.BASELINE, role="baseline", **common),
            RunConfig(variant=variants.BASELINE, role="aa", **common)]
    runs += [RunConfig(variant=name, role="variant", **common) for name in names]
    ids = [r.run_id for r in runs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"two runs would share the id {', '.join(twice)}: name each variant once")
    return runs


def resolve_names(spec: str) -> list[str]:
    """`all` is every registered variant; otherwise a comma-separated list of specs (a+b allowed)."""
    if spec.strip() == "all":
        return list(variants.registry())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        variants.parse(name)  # unknown names stop the suite before any run starts
    return [n for n in names if n != variants.BASELINE]


def _records(cfg: RunConfig) -> list[dict]:
    """CFG's records; a torn line (a killed writer) is skipped here as `results.load` skips it."""
    path = Path(cfg.out_dir) / f"{cfg.run_id}.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def finished_ok(cfg: RunConfig) -> bool:
    """True when every trial of CFG's profile is stored ok and nothing in the run failed."""
    statuses = {r.get("status") for r in _records(cfg)}
    if statuses != {"ok"}:
        return False
    p = profiles.get(cfg.profile)
    prompts = profiles.load_prompts(cfg.prompts_csv, p.prompt_ids)
    expected = {(cfg.variant, q["id"], s, t, "trial") for q in prompts for s in p.seeds for t in range(p.trials)}
    return expected <= results.completed_keys(cfg.out_dir, cfg.run_id)


def set_aside(cfg: RunConfig) -> None:
    """Move an unfinished run's records out of the store before it runs again, so the report
    never mixes two attempts; they stay on disk under superseded/ for whoever wants them."""
    path = Path(cfg.out_dir) / f"{cfg.run_id}.jsonl"
    if path.exists():
        old = Path(cfg.out_dir) / "superseded"
        old.mkdir(exist_ok=True)
        path.rename(old / f"{cfg.run_id}.{time.time_ns()}.jsonl.old")


def run_status(cfg: RunConfig) -> tuple[str, str]:
    """(status, reason) of a finished run, read back from its records."""
    records = _records(cfg)
    if not records:
        return "failed", NO_RECORDS
    for status in ("not applicable", "failed"):
        bad = [r for r in records if r.get("status") == status]
        if bad:
            return status, bad[0].get("error") or ""
    return "ok", ""


def execute_in_kernel(cfg: RunConfig, profiling: bool, timeout_s: float, notebook=NOTEBOOK) -> tuple[str, str]:
    """Run CFG through NOTEBOOK in a fresh kernel; every way it can go wrong ends as a record."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out = Path(cfg.out_dir) / "notebooks" / f"{cfg.run_id}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = dict(variant=cfg.variant, role=cfg.role, source=cfg.source, device=cfg.device,
                      profile=cfg.profile, out_dir=cfg.out_dir, run_id=cfg.run_id, profiling=profiling,
                      prompts_csv=cfg.prompts_csv)
    try:
        papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name=KERNEL,
                                   execution_timeout=timeout_s, progress_bar=False,
                                   cwd=str(Path(notebook).resolve().parent))
    except CellTimeoutError:
        reason = f"timed out: a notebook cell ran longer than the {timeout_s:.0f} s limit"
    except DeadKernelError:
        reason = "the kernel died (killed by the system, often for running out of memory, or crashed)"
    except papermill.PapermillExecutionError as exc:
        reason = f"notebook error in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel did not start, the notebook could not be written, ...
        reason = f"could not run the notebook: {type(exc).__name__}: {str(exc).strip()[:300]}"
    else:
        status, reason = run_status(cfg)
        if reason != NO_RECORDS:
            return status, reason
    runner.record_failure(cfg, reason)
    return "failed", reason


def warm_weights(runs: list[RunConfig], progress: bool = True) -> None:
    """Build the random weights the runs will load once, in a process of its own, before the
    first run: otherwise the baseline's load would include the build and no other run's would.
    A failure here is only reported; each run then builds (or fails) on its own, on record."""
    root = models.cache_root()
    if root is None:  # TTSOPT_CACHE=off: every run builds its own, as asked
        return
    for source, seed in sorted({(r.source, r.model_seed) for r in runs if r.source in ("synthetic", "tiny")}):
        if progress:
            print(f"suite: preparing {source} weights (built once, then cached in {root})",
                  file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "ttsopt.models", "warm", source, str(seed)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            print(f"suite: could not prepare the {source} weights ({tail}); each run builds its own",
                  file=sys.stderr, flush=True)


def run_suite(runs: list[RunConfig], *, resume: bool = False, profiling: bool = True,
              time_limit_s: float | None = None, notebook=NOTEBOOK, progress=True) -> list[Outcome]:
    outcomes = []
    warm_weights(runs, progress)
    if runs:
        # The report shows prompt texts beside the audio; the records only name their ids.
        copy = Path(runs[0].out_dir) / "prompts.csv"
        copy.parent.mkdir(parents=True, exist_ok=True)
        if Path(runs[0].prompts_csv).resolve() != copy.resolve():
            shutil.copyfile(runs[0].prompts_csv, copy)
    bar = tqdm(runs, desc="suite", unit="run", file=sys.stderr, disable=not progress)
    for cfg in bar:
        bar.set_postfix_str(cfg.run_id)
        t0 = time.perf_counter()
        if resume and finished_ok(cfg):
            outcomes.append(Outcome(cfg.run_id, "skipped", "already complete"))
            continue
        set_aside(cfg)
        reason = variants.unavailable(cfg.variant)
        if reason:
            runner.record_failure(cfg, reason, status="not applicable")
            status = "not applicable"
        else:
            p = profiles.get(cfg.profile)
            profiled = profiling and (p.profiled == "all" or cfg.role == "baseline")
            status, reason = execute_in_kernel(cfg, profiled, time_limit_s or p.time_limit_s, notebook)
        outcomes.append(Outcome(cfg.run_id, status, reason, time.perf_counter() - t0))
        bar.write(f"{cfg.run_id}: {status}" + (f" ({reason})" if reason else "")
                  + f" in {outcomes[-1].seconds:.0f} s", file=sys.stderr)
    return outcomes
