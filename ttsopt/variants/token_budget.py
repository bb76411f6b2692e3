"""token-budget: a concrete reading of the campaign's "token sequence optimization" (assessment #7).

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
from dataclasses import replace

import numpy as np
import torch

from ..core.claims import Claim, less
from ..engine.pipeline import Synthesis
from ..measure.timing import StageTimes, Stopwatch
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
    claims = (Claim("time_to_stop", "claimed 27% faster generation (token sequence optimization)", *less(27),
                    source="assessment #7"),)

    def apply(self, pipeline):
        log = {"syntheses": 0, "split": 0, "bound": 0, "last": {}}

        def synthesize(inner, text, *, seed=0, n_tokens=None, reference_wav=None, sampling=None, timer=None):
            s = sampling or pipeline.sampling
            chunks = sentences(text) if isinstance(text, str) else []
            if len(chunks) <= 1 or (n_tokens is not None and n_tokens < len(chunks)):
                chunks = [text]
            forced = split_forced(n_tokens, chunks) if n_tokens is not None else [None] * len(chunks)
            budgets = [max(budget(c, s.max_new_tokens), f or 0) for c, f in zip(chunks, forced)]
            timer = timer if timer is not None else StageTimes(pipeline.device)
            clock = Stopwatch(pipeline.device)
            parts = [inner(c, seed=seed + i, n_tokens=f, reference_wav=reference_wav if i == 0 else None,
                           sampling=replace(s, max_new_tokens=b), timer=timer)
                     for i, (c, f, b) in enumerate(zip(chunks, forced, budgets))]
            wall = clock.elapsed()
            log["syntheses"] += 1
            log["split"] += len(parts) > 1
            # A budget binds when a natural-stop run used all of it: the cap cut a runaway short.
            log["bound"] += sum(f is None and p.raw_tokens.numel() >= b for p, f, b in zip(parts, forced, budgets))
            log["last"] = {"chunks": len(chunks), "budgets": budgets, "forced_shares": forced,
                           "tokens": [p.n_tokens for p in parts], "upstream_budget": s.max_new_tokens}
            if len(parts) == 1:
                return parts[0]
            return Synthesis(text=text, wav=np.concatenate([p.wav for p in parts]), sr=parts[0].sr,
                             tokens=torch.cat([p.tokens for p in parts]),
                             raw_tokens=torch.cat([p.raw_tokens for p in parts]), stages=timer.as_dict(),
                             wall_s=wall, t3_forwards=sum(p.t3_forwards or 0 for p in parts),
                             extra={"chunks": len(parts)})

        pipeline.wrap_synthesis(synthesize, by=self.name)
        return log

    def evidence(self, pipeline, log) -> dict:
        return dict(log)

    def engaged(self, evidence):
        split, bound = evidence.get("split", 0), evidence.get("bound", 0)
        ok = split > 0 or bound > 0
        return ok, (f"{split} synthesis(es) split into sentences, {bound} budget(s) reached" if ok else
                    "every text was one sentence and no budget was reached: it changed nothing")


VARIANTS = [TokenBudget()]
