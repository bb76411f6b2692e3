"""Quality beside speed, per run: the word error rate, voice similarity and predicted MOS of both
sides' clips (`q_word_error_rate`, `q_voice_similarity_chatterbox` in Chatterbox's own speaker space, `q_mos`;
scored by the runner after each first trial, real weights only)
and the problems the model-free checks flagged. A verdict never hides a loss: when the variant's
median is worse than the baseline's by more than the baseline's own spread over its seeds (and at
least the check's smallest named change), the run's verdict reads "..., quality loss".

Random weights speak noise: nothing is scored, and the report says quality needs real weights.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.vocab import Phase, Side

WER = "q_word_error_rate"
MIN_WER_LOSS = 0.05  # a change of one word in twenty: below it no loss is named, whatever the spread
RANDOM_SOURCES = ("synthetic", "tiny")
# column, label, +1 where higher is worse (-1 where lower is), the smallest change named a loss
CHECKS = ((WER, "word error rate", 1, MIN_WER_LOSS), ("q_voice_similarity_chatterbox", "voice similarity", -1, 0.02),
          ("q_mos", "MOS", -1, 0.1))


def judge(recs: pd.DataFrame) -> dict:
    """The quality fields of one run's row: quality_text, quality_loss and the medians behind them."""
    out = {"quality_loss": False, "quality_text": "", "wer_baseline": math.nan, "wer_variant": math.nan,
           "wer_spread": math.nan}
    trials = recs[recs["phase"] == Phase.TRIAL] if "phase" in recs else recs.iloc[0:0]
    parts, losses = [], []
    for column, label, worse, minimum in CHECKS:
        if column not in trials:
            continue
        scored = trials[pd.to_numeric(trials[column], errors="coerce").notna()]
        if scored.empty:
            continue
        base, var = scored[scored["side"] == Side.BASELINE], scored[scored["side"] == Side.VARIANT]
        b, v = _median(base[column]), _median(var[column])
        per_seed = pd.to_numeric(base[column], errors="coerce").groupby(base["seed"]).median()
        spread = float(per_seed.max() - per_seed.min()) if len(per_seed) > 1 else math.nan
        loss = math.isfinite(b) and math.isfinite(v) and worse * (v - b) > max(
            spread if math.isfinite(spread) else 0.0, minimum)
        spread_text = f"{spread:.2f}" if math.isfinite(spread) else "unknown (one seed)"
        parts.append(f"{label} {b:.2f} → {v:.2f} (n = {len(var)}; the baseline's spread over seeds {spread_text})")
        if loss:
            losses.append(label)
        if column == WER:
            out.update(wer_baseline=b, wer_variant=v, wer_spread=spread)
    if not parts:
        random = recs["source"].isin(RANDOM_SOURCES).any() if "source" in recs else False
        out["quality_text"] = "needs real weights (random weights speak noise)" if random else "not scored"
        return out
    checked = trials[trials["q_problems"].notna()] if "q_problems" in trials else trials.iloc[0:0]
    flagged = [f"{side} {_flagged(checked[checked['side'] == side])}/{int((checked['side'] == side).sum())}"
               for side in (Side.BASELINE, Side.VARIANT)]
    text = "; ".join(parts) + f"; clips flagged: {', '.join(flagged)}"
    if losses:
        text += f": quality loss ({', '.join(losses)} worse beyond the baseline's spread)"
    out.update(quality_loss=bool(losses), quality_text=text)
    return out


def _median(values) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def _flagged(rows: pd.DataFrame) -> int:
    if "q_problems" not in rows:
        return 0
    return int(rows["q_problems"].fillna("").astype(str).str.len().gt(0).sum())
