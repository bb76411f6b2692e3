"""Quality beside speed, per run: the word error rate of both sides' clips (`q_word_error_rate`,
scored by the runner after each first trial, real weights only) and the problems the model-free
checks flagged. A verdict never hides a loss: when the variant's median word error rate exceeds
the baseline's by more than the baseline's own spread over its seeds (and at least
`MIN_WER_LOSS`), the run's verdict reads "..., quality loss".

Random weights speak noise: nothing is scored, and the report says quality needs real weights.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.vocab import Phase, Side

WER = "q_word_error_rate"
MIN_WER_LOSS = 0.05  # a change of one word in twenty: below it no loss is named, whatever the spread
RANDOM_SOURCES = ("synthetic", "tiny")


def judge(recs: pd.DataFrame) -> dict:
    """The quality fields of one run's row: quality_text, quality_loss and the medians behind them."""
    out = {"quality_loss": False, "quality_text": "", "wer_baseline": math.nan, "wer_variant": math.nan,
           "wer_spread": math.nan}
    scored = recs[recs["phase"] == Phase.TRIAL] if "phase" in recs else recs.iloc[0:0]
    if WER in scored:
        scored = scored[pd.to_numeric(scored[WER], errors="coerce").notna()]
    else:
        scored = scored.iloc[0:0]
    if scored.empty:
        random = recs["source"].isin(RANDOM_SOURCES).any() if "source" in recs else False
        out["quality_text"] = "needs real weights (random weights speak noise)" if random else "not scored"
        return out
    base = scored[scored["side"] == Side.BASELINE]
    var = scored[scored["side"] == Side.VARIANT]
    wb, wv = _median(base[WER]), _median(var[WER])
    per_seed = pd.to_numeric(base[WER], errors="coerce").groupby(base["seed"]).median()
    spread = float(per_seed.max() - per_seed.min()) if len(per_seed) > 1 else math.nan
    margin = max(spread if math.isfinite(spread) else 0.0, MIN_WER_LOSS)
    loss = math.isfinite(wb) and math.isfinite(wv) and wv - wb > margin
    spread_text = f"{spread:.2f}" if math.isfinite(spread) else "unknown (one seed)"
    text = (f"word error rate {wb:.2f} → {wv:.2f} (n = {len(var)}; the baseline's spread over seeds "
            f"{spread_text}){': quality loss' if loss else ''}")
    flagged = [f"{side} {_flagged(rows)}/{len(rows)}" for side, rows in (("baseline", base), ("variant", var))]
    text += f"; clips flagged: {', '.join(flagged)}"
    out.update(quality_loss=bool(loss), quality_text=text, wer_baseline=wb, wer_variant=wv, wer_spread=spread)
    return out


def _median(values) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def _flagged(rows: pd.DataFrame) -> int:
    if "q_problems" not in rows:
        return 0
    return int(rows["q_problems"].fillna("").astype(str).str.len().gt(0).sum())
