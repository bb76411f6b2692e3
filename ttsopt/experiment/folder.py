"""A results folder knows what it holds. `suite.json` names the profile, source, device and prompt
set (by hash) a suite was started with; every later `ttsopt run` into the folder is checked
against it before any kernel starts, so records of two different suites are never compared by
accident, and a file of the user's in the folder is never overwritten. Each sitting (a start or
a `--resume`) is added to the manifest with its order and time.

Needs no torch: it runs on the rejection path of the command line.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..core.errors import UserError

MANIFEST = "suite.json"
PROMPTS_COPY = "prompts.csv"
IDENTITY = ("model", "profile", "source", "device", "prompts_sha256")
# What a manifest written before a key existed meant by it.
UNRECORDED = {"model": "original"}
# What a suite writes into its folder (besides its *.jsonl and *.env.json records); `--force`
# moves these, and only these, aside.
OWNED = (MANIFEST, "index.html", "notebooks", "reference", "audio", "plots", "traces", "html", "logs", "models")
SUPERSEDED = "superseded"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def identity(profile: str, source: str, device: str, prompts_csv, model: str = "original") -> dict:
    return {"model": model, "profile": profile, "source": source, "device": device,
            "prompts_sha256": sha256(prompts_csv)}


def describe(ident: dict) -> str:
    parts = [f"model {ident['model']}"] if ident.get("model", "original") != "original" else []
    parts += [f"{k} {ident[k]}" for k in ("profile", "source", "device") if ident.get(k)]
    if ident.get("prompts_sha256"):
        parts.append(f"prompts {ident['prompts_sha256'][:8]}")
    return ", ".join(parts) or "nothing recorded"


def read_manifest(out_dir) -> dict | None:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}): move it away, or choose another --out") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} is not a suite manifest: move it away, or choose another --out")
    return manifest


def _records(out_dir: Path) -> list[Path]:
    return sorted([*out_dir.glob("*.jsonl"), *out_dir.glob("*.env.json")])


def check(out_dir, ident: dict, force: bool = False) -> None:
    """Refuse OUT_DIR when it holds another suite's records (or, with FORCE, move them aside), and
    when its prompts.csv is a file of the user's that the suite would overwrite."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder for the results")
    if not out.is_dir():
        return
    manifest = read_manifest(out)
    if manifest is None and _records(out):
        clash = "holds records but no suite.json (written by a notebook, or by another tool)"
    elif manifest is not None and any(manifest.get(k, UNRECORDED.get(k)) not in (None, ident[k]) for k in IDENTITY):
        clash = f"holds a suite of {describe({**UNRECORDED, **manifest})}; this one is {describe(ident)}"
    else:
        clash = ""
    ours = manifest.get("prompts_sha256") if manifest else None
    copy = out / PROMPTS_COPY
    if copy.is_file() and sha256(copy) not in (ident["prompts_sha256"], ours):
        raise UserError(f"{copy} is not a prompt set this suite wrote, and the suite keeps its prompt texts there: "
                        "move your file, or choose another --out")
    if clash and not force:
        raise UserError(f"--out {out} {clash}: choose another --out, add --resume only for the same suite, "
                        "or pass --force to move the old results aside (under superseded/)")
    if clash:
        set_aside_all(out, keep_prompts=ours is None)


def set_aside_all(out: Path, keep_prompts: bool) -> Path:
    """Move every file the old suite wrote into superseded/<time>/; nothing is deleted."""
    target = out / SUPERSEDED / time.strftime("%Y%m%dT%H%M%S")
    target.mkdir(parents=True, exist_ok=True)
    names = [*OWNED, *([] if keep_prompts else [PROMPTS_COPY])]
    for path in [*(out / n for n in names), *_records(out)]:
        if path.exists():
            path.rename(target / path.name)
    return target


def write_manifest(out_dir, ident: dict, order: list[str], order_seed: int, resume: bool) -> dict:
    """Record this sitting in OUT_DIR/suite.json (created with IDENT on the first)."""
    out = Path(out_dir)
    manifest = read_manifest(out) or {}
    sitting = {"started_utc": datetime.now(UTC).isoformat(timespec="seconds"), "order_seed": order_seed,
               "order": order, "resume": resume, "ttsopt": __version__}
    manifest = {**ident, "created_utc": manifest.get("created_utc", sitting["started_utc"]),
                "sittings": [*manifest.get("sittings", []), sitting], "order_seed": order_seed, "order": order}
    tmp = out / f".{MANIFEST}.part"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(out / MANIFEST)
    return manifest
