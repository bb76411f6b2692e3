"""Run profiles: how much work one run does. Plain values, chosen for a purpose.

A run of the in-process design makes one replicate per (prompt, seed, trial): a baseline and a
variant synthesis next to each other. A run of the cross-process design makes one replicate per
round: a fresh baseline process and a fresh variant process, each timing its first call (the
cold start) and `cross_trials` trials of the first prompt per seed.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..core import params
from ..core.errors import UserError

PROMPTS_CSV = Path(__file__).resolve().parents[2] / "data" / "prompts" / "prompts.csv"
PROMPT_COLUMNS = ("id", "category", "text")
SPEECH_TOKENS_PER_CHAR = 1.2  # ~15 characters and 25 S3 tokens per second of English speech, rounded down
MIN_TOKENS, MAX_TOKENS = 25, 1000  # one second of speech; upstream's cap


@dataclass(frozen=True)
class Profile:
    name: str
    prompt_ids: tuple[str, ...] | None  # None: the whole prompt set
    seeds: tuple[int, ...]
    trials: int             # in-process: pairs per (prompt, seed)
    rounds: int             # cross-process: rounds of one baseline and one variant process
    cross_trials: int       # cross-process: trials per process after its cold call
    warmup_tokens: int | None  # each side's first, excluded call (in-process); None: the first trial's length
    tokens: int | None      # forced speech tokens per prompt; None scales with the text
    time_limit_s: int       # per run until the suite has measured the baseline's cost
    fidelity_prompts: int   # prompts whose logits and mels are probed
    profiled: str = "reference"  # runs that get the torch.profiler pass: "all" or "reference"

    @property
    def pairs(self) -> int:
        n = len(self.prompt_ids) if self.prompt_ids is not None else None
        return n * len(self.seeds) * self.trials if n else 0


PROFILES = {
    # A 2-core CPU and full-size random weights. Lengths follow the text: "Hello world." is one
    # second of speech, numbers-02 three. Six pairs per run are what a suite of every variant can
    # afford there; with the noise of a quiet machine they decide a 10% effect.
    "quick": Profile("quick", ("short-01", "short-02", "numbers-02"), (0, 1), trials=1, rounds=3, cross_trials=1,
                     warmup_tokens=4, tokens=None, time_limit_s=3600, fidelity_prompts=1),
    # A GPU box overnight: every prompt, three seeds, two trials, five rounds.
    "full": Profile("full", None, (0, 1, 2), trials=2, rounds=5, cross_trials=2, warmup_tokens=25, tokens=None,
                    time_limit_s=7200, fidelity_prompts=2, profiled="all"),
    # The tiny model in tests and CI: the same machinery in seconds.
    "smoke": Profile("smoke", ("short-01", "medium-01", "numbers-01"), (0, 1), trials=1, rounds=2, cross_trials=1,
                     warmup_tokens=4, tokens=8, time_limit_s=600, fidelity_prompts=1),
}


def get(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    return PROFILES[name]


def load_prompts(path=PROMPTS_CSV, ids=None) -> list[dict]:
    """The rows of a prompt file, checked; with IDS, those rows in that order."""
    path = Path(path)
    rows = _check_rows(path, _read_rows(path))
    if ids is not None:
        by_id = {r["id"]: r for r in rows}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise UserError(f"prompts file {path} has no prompt {', '.join(unknown)}")
        rows = [by_id[i] for i in ids]
    return rows


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"prompts file {path} does not exist")
    try:  # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in PROMPT_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"prompts file {path} lacks column(s) {', '.join(missing)} "
                                f"(expected {','.join(PROMPT_COLUMNS)})")
            # `language` is optional (ISO 639-1, default en): only the multilingual model speaks others.
            return [{**{c: (row[c] or "").strip() for c in PROMPT_COLUMNS},
                     "language": (row.get("language") or "").strip().lower() or "en"} for row in reader]
    except UnicodeDecodeError as exc:
        raise UserError(f"prompts file {path} is not UTF-8 ({exc.reason} at byte {exc.start}): "
                        "save it as UTF-8") from exc
    except csv.Error as exc:
        raise UserError(f"prompts file {path} is not a readable CSV ({exc})") from exc


def _check_rows(path: Path, rows: list[dict]) -> list[dict]:
    def named(bad):
        return ", ".join([r["id"] or f"row {i + 2}" for i, r in enumerate(rows) if bad(r)][:5])

    if nul := named(lambda r: any("\x00" in v for v in r.values())):
        raise UserError(f"prompts file {path} has a NUL byte in {nul}: "
                        "it is probably not a text file, or was saved as UTF-16; save it as UTF-8")
    if empty := named(lambda r: not r["id"] or not r["text"]):
        raise UserError(f"prompts file {path} has rows without id or text: {empty}")
    if unknown := named(lambda r: r["language"] not in params.MULTILINGUAL):
        raise UserError(f"prompts file {path} has a language no model speaks in {unknown}: "
                        f"expected an ISO 639-1 code of {', '.join(params.MULTILINGUAL)}")
    ids_seen = [r["id"] for r in rows]
    twice = sorted({i for i in ids_seen if ids_seen.count(i) > 1})
    if twice:
        raise UserError(f"prompts file {path} has the id {', '.join(twice)} more than once")
    if not rows:
        raise UserError(f"prompts file {path} has no prompts")
    return rows


def check_languages(rows: list[dict], model: str, path=PROMPTS_CSV) -> list[dict]:
    """ROWS, when MODEL speaks every row's language; otherwise one error naming the rows."""
    bad = [r["id"] for r in rows if r.get("language", "en") not in params.LANGUAGES[model]]
    if bad:
        raise UserError(f"the {model} model speaks English only, and prompts file {path} has other languages in "
                        f"{', '.join(bad[:5])}: use --model multilingual, or prompts whose language is en")
    return rows


def prompts_for(profile: Profile, path=PROMPTS_CSV) -> list[dict]:
    """The prompts a run of PROFILE speaks from PATH: the profile's own ids where the file has them
    all, otherwise (a prompt set of the user's) its first prompts, as many as the profile names."""
    rows = load_prompts(path)
    if profile.prompt_ids is None:
        return rows
    by_id = {r["id"]: r for r in rows}
    if all(i in by_id for i in profile.prompt_ids):
        return [by_id[i] for i in profile.prompt_ids]
    return rows[:len(profile.prompt_ids)]


def token_budget(profile: Profile, text: str) -> int:
    """The forced speech-token count for TEXT: fixed per profile, or scaled with the text."""
    if profile.tokens is not None:
        return profile.tokens
    return max(MIN_TOKENS, min(MAX_TOKENS, round(SPEECH_TOKENS_PER_CHAR * len(text))))
