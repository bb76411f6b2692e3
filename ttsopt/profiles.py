"""Run profiles: how much work one variant run does. Plain values, chosen for a purpose."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

PROMPTS_CSV = Path(__file__).resolve().parent.parent / "data" / "prompts" / "prompts.csv"
PROMPT_COLUMNS = ("id", "category", "text")
SPEECH_TOKENS_PER_CHAR = 1.2  # ~15 characters and 25 S3 tokens per second of English speech, rounded down


@dataclass(frozen=True)
class Profile:
    name: str
    prompt_ids: tuple[str, ...] | None  # None: the whole prompt set
    seeds: tuple[int, ...]
    trials: int
    warmup: int
    tokens: int | None      # forced speech tokens per prompt; None scales with the text
    time_limit_s: int       # per variant run, load included
    fidelity_prompts: int   # prompts whose logits and mels are probed
    profiled: str = "all"   # runs that get the torch.profiler pass: "all" or "baseline"


PROFILES = {
    # A 2-core CPU and full-size random weights: 5-14 s per synthesis, depending on the CPU. Six (prompt, seed) pairs
    # are the fewest for which a paired test can reach p < 0.05, so that is what quick runs.
    # A profiler pass costs three syntheses, so on a CPU only the baseline is taken apart.
    "quick": Profile("quick", ("short-01", "medium-01", "numbers-01"), (0, 1), trials=1, warmup=0,
                     tokens=16, time_limit_s=900, fidelity_prompts=1, profiled="baseline"),
    # A GPU box overnight: every prompt, three seeds, repeated trials, lengths that follow the text.
    "full": Profile("full", None, (0, 1, 2), trials=3, warmup=2, tokens=None, time_limit_s=3600,
                    fidelity_prompts=2),
    # The tiny model in tests and CI: the same machinery in seconds.
    "smoke": Profile("smoke", ("short-01", "medium-01", "numbers-01"), (0, 1), trials=1, warmup=1,
                     tokens=8, time_limit_s=300, fidelity_prompts=1),
}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    return PROFILES[name]


def load_prompts(path=PROMPTS_CSV, ids=None) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file {path} does not exist")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PROMPT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"prompts file {path} lacks column(s) {', '.join(missing)} "
                            f"(expected {','.join(PROMPT_COLUMNS)})")
        rows = [{c: (row[c] or "").strip() for c in PROMPT_COLUMNS} for row in reader]
    empty = [r["id"] or f"row {i + 2}" for i, r in enumerate(rows) if not r["id"] or not r["text"]]
    if empty:
        raise UserError(f"prompts file {path} has rows without id or text: {', '.join(empty[:5])}")
    if ids is not None:
        by_id = {r["id"]: r for r in rows}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise UserError(f"prompts file {path} has no prompt {', '.join(unknown)}")
        rows = [by_id[i] for i in ids]
    return rows


def token_budget(profile: Profile, text: str) -> int:
    """The forced speech-token count for TEXT: fixed per profile, or scaled with the text."""
    if profile.tokens is not None:
        return profile.tokens
    return max(25, min(1000, round(SPEECH_TOKENS_PER_CHAR * len(text))))
