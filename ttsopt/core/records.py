"""The results store: one record type, append-only JSON lines, and one checksummed reader.

Vocabulary (after pyperf): a *run* is one comparison, a row of the report — a variant, or the
baseline again (A/A), against the baseline. A run is made of one or more *processes* (pyperf's
runs): one for the in-process design, two per round for the cross-process design. A *trial*
is one synthesis. Every line of `<dir>/<run_id>.jsonl` is one `TrialRecord`, flattened; the
environment of each process is kept beside it in `<dir>/<run_id>.env.json`.

The columns, their units and meaning are `COLUMNS` below; `schema_markdown()` prints them.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StorageError
from .secrets import redact
from .vocab import Design, Phase, Role, Side, Status

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    unit: str
    doc: str


COLUMNS = (
    Column("schema", "int", "", "SCHEMA_VERSION of the writer"),
    Column("run_id", "str", "", "the run (one row of the report) the record belongs to; names its files"),
    Column("variant", "str", "", "the variant spec compared with the baseline ('baseline' for an A/A run)"),
    Column("role", "str", "", "vocab.Role: 'aa' (the baseline again) or 'variant'"),
    Column("design", "str", "", "vocab.Design: 'in-process' or 'cross-process'"),
    Column("side", "str", "", "vocab.Side: which of the two compared things ran: 'baseline' or 'variant'"),
    Column("process", "int", "", "the process of the run that wrote the record, from 0"),
    Column("round", "int", "", "cross-process design: the round (a baseline and a variant process)"),
    Column("pair", "int", "", "in-process design: the interleaved pair (baseline and variant trial)"),
    Column("source", "str", "", "where the weights came from: hub, local:DIR, synthetic, tiny"),
    Column("model", "str", "", "which Chatterbox: original, turbo (absent in older records: original)"),
    Column("device", "str", "", "torch device, e.g. 'cpu', 'cuda:0'"),
    Column("profile", "str", "", "the run profile (ttsopt.experiment.profiles)"),
    Column("phase", "str", "", "vocab.Phase: load, warmup, cold, trial, fidelity, evidence, stream, batch"),
    Column("status", "str", "", "vocab.Status: ok, failed, not applicable"),
    Column("error", "str", "", "why the status is not ok: the exception, or the missing requirement"),
    Column("prompt_id", "str", "", "prompt from the prompt set"),
    Column("category", "str", "", "the prompt's category, e.g. short, long"),
    Column("seed", "int", "", "sampling seed"),
    Column("trial", "int", "", "repeat index within (prompt, seed), from 0"),
    Column("n_tokens", "int", "", "speech tokens rendered"),
    Column("forced_tokens", "int", "", "the forced length (random weights); null for a natural stop"),
    Column("t3_forwards", "int", "", "T3 transformer forwards after prefill (equal work check)"),
    Column("audio_s", "float", "s", "duration of the audio produced"),
    Column("wall_s", "float", "s", "synthesis wall time, device work included"),
    Column("rtf", "float", "1", "wall_s / audio_s; below 1 is faster than real time"),
    Column("tokens_per_s", "float", "1/s", "T3 tokens emitted per second of decode stage"),
    Column("claims", "str", "", "phase load: JSON list of the variant's claims (core.claims.Claim)"),
    Column("evidence", "str", "", "phase evidence: JSON, what the variant shows of itself after its trials"),
    Column("engaged", "bool", "", "phase evidence: the variant's own check over its evidence"),
    Column("engaged_reason", "str", "", "phase evidence: why it counts as engaged or not"),
    Column("machine_load", "float", "", "1-minute load average when the record was written (load, evidence)"),
    Column("busy_processes", "str", "", "other processes using a CPU when the process started or ended"),
    Column("suite_position", "int", "", "the run's place in its suite's (randomised) order"),
    Column("time_utc", "str", "", "when the record was written, ISO 8601"),
    Column("audio_path", "str", "", "saved audio, relative to the results directory"),
    Column("stage_<name>", "float", "s", "time in one pipeline stage (vocab.Stage)"),
    Column("mem_<name>", "float", "MiB", "one memory metric by its own name (ttsopt.measure.memory)"),
    Column("fid_<name>", "float", "", "one fidelity metric against the baseline, unit in its name"),
    Column("x_<name>", "", "", "what a variant or phase records beside the above"),
    Column("q_<name>", "", "", "a quality check of the trial's clip (ttsopt.measure.quality; real weights only)"),
)
CORE_COLUMNS = [c.name for c in COLUMNS if "<" not in c.name]
PREFIXES = ("stage_", "mem_", "fid_", "x_", "q_")
KEY_COLUMNS = ("run_id", "process", "side", "prompt_id", "seed", "trial", "phase")
_ENUMS = {"phase": Phase, "status": Status, "role": Role, "design": Design, "side": Side}


def schema_markdown() -> str:
    """The record schema as a Markdown table, from COLUMNS."""
    rows = [f"| `{c.name}` | {c.type} | {c.unit} | {c.doc} |" for c in COLUMNS]
    return "\n".join(["| column | type | unit | meaning |", "| --- | --- | --- | --- |", *rows])


@dataclass
class TrialRecord:
    """One record. Fields left None are written as absent; the dicts flatten to prefixed columns."""
    run_id: str
    variant: str
    phase: str
    status: str = Status.OK
    role: str | None = None
    design: str | None = None
    side: str | None = None
    process: int | None = None
    round: int | None = None
    pair: int | None = None
    source: str | None = None
    model: str | None = None       # which Chatterbox (original, turbo); absent in older records: original
    device: str | None = None
    profile: str | None = None
    error: str | None = None
    prompt_id: str | None = None
    category: str | None = None
    seed: int | None = None
    trial: int | None = None
    n_tokens: int | None = None
    forced_tokens: int | None = None
    t3_forwards: int | None = None
    audio_s: float | None = None
    wall_s: float | None = None
    rtf: float | None = None
    tokens_per_s: float | None = None
    claims: str | None = None
    evidence: str | None = None
    engaged: bool | None = None
    engaged_reason: str | None = None
    machine_load: float | None = None
    busy_processes: str | None = None
    suite_position: int | None = None
    audio_path: str | None = None
    stages: dict = field(default_factory=dict)
    mem: dict = field(default_factory=dict)
    fid: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)

    def row(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("stages", "mem", "fid", "extra", "quality") and getattr(self, f.name) is not None}
        for prefix, values in (("stage_", self.stages), ("mem_", self.mem), ("fid_", self.fid), ("x_", self.extra),
                               ("q_", self.quality)):
            out.update({f"{prefix}{k}": v for k, v in values.items() if v is not None})
        return {k: (v.value if hasattr(v, "value") else v) for k, v in out.items()}


def _plain(value):
    # numpy scalars come out of every measurement; JSON only knows Python's.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a results record")


def _canonical(record: dict) -> str:
    # Sorted keys and fixed separators: the same record always gives the same text,
    # so the checksum can be recomputed on load.
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=_plain)


def _crc(record: dict) -> int:
    return zlib.crc32(_canonical(record).encode())


def _fsync_dir(path: Path) -> None:
    # Makes a newly created or renamed file's directory entry durable too.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def validate(record: dict) -> None:
    for column, enum in _ENUMS.items():
        value = record.get(column)
        if value is None and column in ("phase", "status"):
            raise ValueError(f"a record needs a {column}: one of {', '.join(e.value for e in enum)}")
        if value is not None and value not in {e.value for e in enum}:
            raise ValueError(f"{column} must be one of {', '.join(e.value for e in enum)}, got {value!r}")
    if "variant" not in record:
        raise ValueError("a record needs a variant")


def storage_error(path: Path, exc: OSError, created: bool) -> StorageError:
    """The one-line error for a failed write; a file the write itself created and left empty is
    removed, so no 0-byte record file is left behind. A torn last line is ended on the next open."""
    if created and path.exists() and path.stat().st_size == 0:
        path.unlink()
    return StorageError(f"cannot write {path}: {exc.strerror or exc}; free space (or choose another --out), "
                        "then run again with --resume")


class Store:
    def __init__(self, dir, run_id: str):
        self.dir = Path(dir)
        self.run_id = run_id
        self.path = self.dir / f"{run_id}.jsonl"
        self.env_path = self.dir / f"{run_id}.env.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        # A killed writer may have left half a line; resuming without a newline would
        # glue the next record onto it and lose that record too.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())

    def append(self, record: TrialRecord | dict) -> None:
        """Write one record durably before returning."""
        record = record.row() if isinstance(record, TrialRecord) else dict(record)
        if record.get("run_id", self.run_id) != self.run_id:
            raise ValueError(f"record run_id {record['run_id']!r} != store's {self.run_id!r}")
        validate(record)
        record.setdefault("time_utc", datetime.now(UTC).isoformat(timespec="milliseconds"))
        clean = redact({**record, "schema": SCHEMA_VERSION, "run_id": self.run_id})
        line = _canonical({**clean, "_crc": _crc(clean)}) + "\n"
        created = not self.path.exists()
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise storage_error(self.path, exc, created) from None
        if created:
            _fsync_dir(self.dir)

    def write_env(self, env: dict, process: int = 0) -> None:
        """Write the environment of PROCESS atomically: readers see the old file or the new one."""
        envs = read_env_file(self.env_path) if self.env_path.is_file() else {}
        envs[str(process)] = env
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{self.run_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(redact(envs), f, indent=2, sort_keys=True, default=_plain)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.env_path)
        except BaseException as exc:
            os.unlink(tmp)
            if isinstance(exc, OSError):
                raise storage_error(self.env_path, exc, created=False) from None
            raise
        _fsync_dir(self.dir)


def read(path) -> list[dict]:
    """Every intact record of one file, or of every *.jsonl under a directory (recursively);
    a torn or corrupt line is skipped with a warning."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path] if path.is_file() else []
    return [r for f in files for r in _read_file(f)]


def _read_file(path: Path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                stored = record.pop("_crc")
                intact = stored == _crc(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                intact = False
            if not intact:
                warnings.warn(f"{path}:{number}: torn or corrupt record skipped", stacklevel=2)
                continue
            if record.get("schema") != SCHEMA_VERSION:
                warnings.warn(f"{path}:{number}: schema {record.get('schema')!r} is not {SCHEMA_VERSION}, "
                              "record skipped", stacklevel=2)
                continue
            yield record


def frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    extra = sorted(c for c in df.columns if c not in CORE_COLUMNS)
    return df.reindex(columns=CORE_COLUMNS + extra)


def load(dir) -> pd.DataFrame:
    """All runs under DIR (searched recursively) as one tidy DataFrame."""
    return frame(read(dir))


def read_env_file(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path}: unreadable environment file skipped ({exc})", stacklevel=2)
        return {}
    return data if isinstance(data, dict) else {}


def load_env(dir) -> dict[str, dict]:
    """{run_id: environment of its first process} for every run under DIR."""
    out = {}
    for path in sorted(Path(dir).rglob("*.env.json")):
        envs = read_env_file(path)
        first = envs.get("0") if isinstance(envs.get("0"), dict) else envs
        out[path.name.removesuffix(".env.json")] = first
    return out


NO_TRIAL = "no measured trial was recorded"


def run_status(rows: list[dict]) -> tuple[str, str]:
    """(status, reason) of one run from its records: the first not-applicable or failed record
    decides; a run without a measured trial failed."""
    for status in (Status.NOT_APPLICABLE, Status.FAILED):
        bad = [r for r in rows if r.get("status") == status]
        if bad:
            return status, bad[0].get("error") or ""
    if not any(r.get("phase") == Phase.TRIAL for r in rows):
        return Status.FAILED, NO_TRIAL
    return Status.OK, ""


def completed_keys(dir, run_id: str | None = None) -> set[tuple]:
    """KEY_COLUMNS of the records already measured ok, to resume a run."""
    # Built from the records rather than the DataFrame, where missing ids become NaN
    # and NaN != NaN would defeat set membership.
    path = Path(dir) / f"{run_id}.jsonl" if run_id else Path(dir)
    return {tuple(r.get(c) for c in KEY_COLUMNS) for r in read(path) if r.get("status") == Status.OK}
