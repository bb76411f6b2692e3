"""One row per run of a results store: status, verdict against the baseline, memory, fidelity,
evidence. The report's summary table and the summary notebook both read it from here."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd

from . import stats, variants

NO_BASELINE = "not compared (no complete baseline run)"
STATUS_ORDER = {"baseline": 0, "aa": 1, "variant": 2}


def fmt_ratio(ratio: float, low: float, high: float) -> str:
    """'×0.62 (0.58–0.66)': the ratio variant / baseline and its confidence interval."""
    if ratio is None or not np.isfinite(ratio):
        return "–"
    return f"×{ratio:.2f} ({low:.2f}–{high:.2f})"


def claimed_change(claim: str) -> tuple[str, float, float] | None:
    """(what, low, high) from a claim's percentage: 'time', 'memory' or 'cold start', as ratios
    new / old. '32% faster' reads as 32% less time — the reading most favourable to the claim.
    None when the claim states no percentage."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:%\s*)?(?:[-–]|to)\s*(\d+(?:\.\d+)?)\s*%|(\d+(?:\.\d+)?)\s*%", claim or "")
    if not m:
        return None
    lo, hi = (float(m.group(1)), float(m.group(2))) if m.group(1) else (float(m.group(3)),) * 2
    text = claim.lower()
    what = "cold start" if "cold" in text else "memory" if re.search(r"vram|memory|\bmb\b", text) else "time"
    return what, 1 - max(lo, hi) / 100, 1 - min(lo, hi) / 100


def _claims(specs) -> tuple[dict[str, str], str]:
    """{spec: claim} and a note when the registry could not be read (claims then shown as unknown)."""
    try:
        known = variants.registry()
    except Exception as exc:  # a broken variant module must not take the whole report down
        return {}, f"the variant registry could not be read ({type(exc).__name__}: {exc}); claims are not shown"
    claims = {}
    for spec in specs:
        parts = [known[n].claim for n in spec.split("+") if n in known and known[n].claim]
        claims[spec] = "; ".join(parts)
    return claims, ""


def _run_status(records: pd.DataFrame) -> tuple[str, str]:
    for status in ("not applicable", "failed"):
        bad = records[records["status"] == status]
        if len(bad):
            return status, str(bad["error"].iloc[0] or "")
    if not (records["phase"] == "trial").any():
        return "failed", "no measured trial was recorded"
    return "ok", ""


def _memory(trials: pd.DataFrame) -> dict[str, float]:
    cols = [c for c in trials.columns if c.startswith("mem_") and c.endswith("_mb")]
    return {c: float(v) for c in cols if np.isfinite(v := pd.to_numeric(trials[c], errors="coerce").max())}


def primary_memory(mem: dict[str, float]) -> str | None:
    """The memory metric a table shows: torch's peak allocated on a GPU, else the process's peak RSS."""
    for name in ("mem_torch_peak_allocated_mb", "mem_rss_peak_mb"):
        if name in mem:
            return name
    return None


def _fidelity(records: pd.DataFrame) -> dict:
    out = {}
    trials = records[records["phase"] == "trial"]
    probes = records[records["phase"] == "fidelity"]
    for name, frame, how in (("fid_token_match", trials, "mean"), ("fid_wav_snr_db", trials, "median"),
                             ("fid_mel_rel_err", probes, "max"), ("fid_logit_rel_err", probes, "max")):
        if name in frame.columns:
            values = pd.to_numeric(frame[name], errors="coerce").replace(np.inf, 1e9).dropna()
            if len(values):
                out[name] = float(getattr(values, how)())
    return out


def describe_fidelity(fid: dict) -> str:
    fid = {k: v for k, v in fid.items() if isinstance(v, (int, float)) and not math.isnan(v)}
    parts = []
    if "fid_token_match" in fid:
        parts.append(f"{fid['fid_token_match']:.0%} of tokens as the baseline")
    if "fid_logit_rel_err" in fid:
        parts.append(f"logit error {fid['fid_logit_rel_err']:.2g}")
    if "fid_mel_rel_err" in fid:
        parts.append(f"mel error {fid['fid_mel_rel_err']:.2g}")
    if "fid_wav_snr_db" in fid:
        snr = fid["fid_wav_snr_db"]
        parts.append("identical audio" if snr >= 1e9 else f"audio SNR {snr:.0f} dB")
    return "; ".join(parts)


def _evidence(records: pd.DataFrame) -> str:
    for value in records["evidence"].dropna():
        if value not in ("", "{}"):
            return str(value)
    return ""


def _audio(records: pd.DataFrame) -> dict[str, str]:
    if "audio_path" not in records.columns:
        return {}
    rows = records.dropna(subset=["audio_path"])
    return dict(zip(rows["prompt_id"], rows["audio_path"]))


def sentence(row: dict) -> str:
    """The verdict in one plain sentence, for someone who reads no statistics."""
    verdict = row["verdict"]
    if verdict == stats.NOT_APPLICABLE:
        return f"Not applicable on this machine: {row['reason']}."
    if verdict == stats.FAILED:
        return f"Failed: {row['reason']}."
    if verdict == NO_BASELINE:
        return "Not compared: the baseline did not complete, so there is nothing to compare with."
    ratio = fmt_ratio(row["ratio"], row["ci_low"], row["ci_high"])
    if row["role"] == "aa":
        return (f"The baseline run a second time took {ratio} the first run's time: differences this small "
                "are the machine's noise, not an optimization.")
    if verdict == stats.FASTER:
        return f"Faster: takes {ratio} the baseline's time per second of audio ({1 - row['ratio']:.0%} less)."
    if verdict == stats.SLOWER:
        return f"Slower: takes {ratio} the baseline's time per second of audio ({row['ratio'] - 1:.0%} more)."
    return (f"No measurable change: {ratio} the baseline's time, within the noise of this machine "
            f"(±{row['threshold']:.0%}) or not statistically significant (p = {row['p_value']:.2g}).")


def table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(one row per run, facts about the whole store: noise floor and notes)."""
    facts: dict = {"noise_floor": None, "notes": []}
    if df.empty:
        return pd.DataFrame(), facts
    runs = {rid: recs for rid, recs in df.groupby("run_id", sort=False)}
    claims, note = _claims({str(r["variant"].iloc[0]) for r in runs.values()})
    if note:
        facts["notes"].append(note)

    status = {rid: _run_status(recs) for rid, recs in runs.items()}
    ok = [rid for rid, (s, _) in status.items() if s == "ok"]
    base_id = next((rid for rid in ok if runs[rid]["role"].iloc[0] == "baseline"), None)
    aa_id = next((rid for rid in ok if runs[rid]["role"].iloc[0] == "aa"), None)
    base = runs[base_id] if base_id else None
    if base is not None and aa_id:
        try:
            facts["noise_floor"] = stats.noise_floor(base, runs[aa_id])
        except ValueError as exc:  # no (prompt, seed) pair in common
            facts["notes"].append(f"the A/A pair could not be compared ({exc}): verdicts use only the 2% threshold")
    else:
        facts["notes"].append("no complete A/A pair: verdicts use only the 2% minimum threshold")
    base_mem = _memory(base[base["phase"] == "trial"]) if base is not None else {}

    rows = []
    for rid, recs in runs.items():
        role, spec = str(recs["role"].iloc[0]), str(recs["variant"].iloc[0])
        st, reason = status[rid]
        trials = recs[recs["phase"] == "trial"]
        mem = _memory(trials)
        metric = primary_memory(mem)
        row = {"run_id": rid, "variant": spec, "role": role, "claim": claims.get(spec, ""), "status": st,
               "reason": reason, "verdict": "", "ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan,
               "p_value": math.nan, "n_pairs": 0, "threshold": math.nan, "memory_metric": metric,
               "memory_mb": mem.get(metric, math.nan), "memory_ratio": math.nan,
               "median_rtf": float(trials["rtf"].median()) if len(trials) else math.nan,
               "evidence": _evidence(recs), "audio": _audio(recs), **_fidelity(recs)}
        if metric and metric in base_mem and base_mem[metric] > 0:
            row["memory_ratio"] = mem[metric] / base_mem[metric]
        if st == "not applicable":
            row["verdict"] = stats.NOT_APPLICABLE
        elif st == "failed":
            row["verdict"] = stats.FAILED
        elif role == "baseline":
            row["verdict"] = "reference"
        elif base is None:
            row["verdict"] = NO_BASELINE
        else:
            try:
                c = stats.compare(base, recs, noise_floor=None if role == "aa" else facts["noise_floor"])
            except ValueError as exc:  # nothing paired with the baseline: say so rather than guess
                row.update(verdict=stats.FAILED, reason=f"not comparable with the baseline: {exc}")
                rows.append(row)
                continue
            row.update(ratio=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high, p_value=c.p_value, n_pairs=c.n_pairs,
                       threshold=c.threshold, verdict="noise floor" if role == "aa" else c.verdict)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["fidelity"] = [describe_fidelity(r) for r in out.to_dict("records")]
    out["sentence"] = [sentence(r) if r["role"] != "baseline" else "The reference every variant is compared with."
                       for r in out.to_dict("records")]
    order = out["role"].map(STATUS_ORDER)
    return out.assign(_o=order).sort_values(["_o", "variant"]).drop(columns="_o").reset_index(drop=True), facts


def evidence_text(evidence: str, limit: int = 240) -> str:
    """A compact one-line form of the evidence JSON, cut at LIMIT characters."""
    try:
        text = json.dumps(json.loads(evidence), separators=(", ", ": "), default=str)
    except (ValueError, TypeError):
        text = evidence
    return text if len(text) <= limit else text[:limit - 1] + "…"
