"""token-budget: our concrete reading of the assessment's "token sequence optimization".

Upstream lets T3 run up to a fixed 1000 speech tokens (40 s of audio) whatever the text; a
run that fails to stop costs all of them. This variant gives each sentence a budget from
its length, and speaks long text sentence by sentence (concatenating the audio), so no
call runs T3 over more than one sentence.

Budget: 25 speech tokens per second of audio at 10 characters per second (slow speech;
English is read at about 14–16), plus one second of slack, never above upstream's cap.
Under length forcing the budget never cuts the forced length: the forced N is split over
the sentences in proportion to their length, and each sentence's budget is at least its
share (text with more sentences than N tokens is spoken in one piece).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import replace

import numpy as np
import torch

from ..pipeline import Synthesis
from .base import Variant

TOKENS_PER_S = 25
SLOW_CHARS_PER_S = 10
SLACK_TOKENS = TOKENS_PER_S
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def budget(text: str, cap: int) -> int:
    return min(cap, SLACK_TOKENS + math.ceil(len(text) * TOKENS_PER_S / SLOW_CHARS_PER_S))


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def split_forced(n: int, chunks: list[str]) -> list[int]:
    """N tokens over the chunks in proportion to their length (largest remainder), at least 1 each."""
    weights = [len(c) for c in chunks]
    extra = n - len(chunks)
    exact = [extra * w / sum(weights) for w in weights]
    shares = [1 + math.floor(e) for e in exact]
    by_remainder = sorted(range(len(chunks)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    for i in by_remainder[:n - sum(shares)]:
        shares[i] += 1
    return shares


class TokenBudget(Variant):
    name = "token-budget"
    claim = "claimed 27% faster generation (token sequence optimization)"

    def apply(self, pipeline) -> None:
        whole = pipeline.synthesize
        pipeline.token_budget_log = {}

        def synthesize(text, *, seed=0, n_tokens=None, reference_wav=None, sampling=None):
            s = sampling or pipeline.sampling
            chunks = sentences(text) if isinstance(text, str) else []
            if len(chunks) <= 1 or (n_tokens is not None and n_tokens < len(chunks)):
                chunks = [text]
            forced = split_forced(n_tokens, chunks) if n_tokens is not None else [None] * len(chunks)
            budgets = [max(budget(c, s.max_new_tokens), f or 0) for c, f in zip(chunks, forced)]
            t0 = time.perf_counter()
            parts = [whole(c, seed=seed + i, n_tokens=f, reference_wav=reference_wav if i == 0 else None,
                           sampling=replace(s, max_new_tokens=b))
                     for i, (c, f, b) in enumerate(zip(chunks, forced, budgets))]
            wall = time.perf_counter() - t0
            pipeline.token_budget_log = {"chunks": len(chunks), "budgets": budgets, "forced_shares": forced,
                                         "tokens": [p.n_tokens for p in parts], "upstream_budget": s.max_new_tokens}
            if len(parts) == 1:
                return parts[0]
            stages = {k: sum(p.stages[k] for p in parts) for k in parts[0].stages}
            return Synthesis(text=text, wav=np.concatenate([p.wav for p in parts]), sr=parts[0].sr,
                             tokens=torch.cat([p.tokens for p in parts]),
                             raw_tokens=torch.cat([p.raw_tokens for p in parts]), stages=stages,
                             wall_s=wall, forced=n_tokens is not None, extra={"chunks": len(parts)})

        pipeline.synthesize = synthesize

    def evidence(self, pipeline) -> dict:
        log = pipeline.token_budget_log
        return log or {"chunks": 0, "note": "no synthesis yet"}


VARIANTS = [TokenBudget()]
