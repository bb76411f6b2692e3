"""Each side of a bench in a fresh process of its own, for memory: what that side alone holds after
loading (resident set growth) and the peak of its first synthesis above that, both measured, not
counted from tensor sizes; and the seconds that load and that first synthesis took, what a process
that speaks once waits. Fresh processes are replicates like the pairs: one per side per pair, in
alternating order (baseline first in even pairs), so these rows get a gain with its interval too.

Why a process per side: in the bench's own process both sides are loaded, so the second side's load
lands on pages and allocator free lists the first one left, and one process's peak is the two
sides' together. A fresh process per side measures what a deployment of that side alone would hold.
Its records join the bench's store (phases `load` and `cold`, design cross-process, the pair as
their `round`, `process` numbered from 1 by `process_number`), so the table reads them like the rest.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

from ..core.errors import UserError
from ..core.vocab import Design, Phase, Side


def process_number(side: str, pair: int) -> int:
    """The `process` of SIDE's fresh process in PAIR: 1, 2 for the first pair's baseline and fast
    side, 3, 4 for the second's, and so on; the in-process pairs are process 0."""
    return 1 + 2 * pair + (side == Side.VARIANT)


@dataclass
class Job:
    out_dir: str
    run_id: str
    source: str
    model: str
    device: str
    spec: str      # the side's variant spec ("baseline" for upstream's pipeline)
    side: str
    text: str
    language: str
    tokens: int | None  # forced length; None: the natural stop (real weights)
    seed: int
    pair: int = 0


def measure(job: Job, timeout_s: float = 1800) -> None:
    """Run JOB in a fresh Python process; its failure is an error naming the side."""
    try:
        proc = subprocess.run([sys.executable, "-m", "ttsopt.experiment.bench_memory", json.dumps(asdict(job))],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"the {job.side} side's memory process timed out after {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the {job.side} side's memory process failed (exit {proc.returncode}): {tail}")


def _main(job: Job) -> None:
    from . import profiles
    from .runner import RunConfig, _load_side, _Run, _synth
    cfg = RunConfig(out_dir=job.out_dir, variant=job.spec, source=job.source, model=job.model, device=job.device,
                    run_id=job.run_id, profile="smoke", side=job.side, round=job.pair,
                    process=process_number(job.side, job.pair))
    profile = profiles.Profile("bench-memory", None, (job.seed,), trials=1, rounds=1, cross_trials=0,
                               warmup_tokens=0, tokens=job.tokens, time_limit_s=0, fidelity_prompts=0)
    run_ = _Run(cfg, Design.CROSS_PROCESS, profile)
    pipeline, _ = _load_side(run_, job.side, job.spec)
    prompt = {"id": "bench", "category": "bench", "text": job.text, "language": job.language}
    record, _ = _synth(run_, job.side, pipeline, prompt, job.seed, Phase.COLD, job.tokens)
    run_.write(record)


if __name__ == "__main__":
    _main(Job(**json.loads(sys.argv[1])))
