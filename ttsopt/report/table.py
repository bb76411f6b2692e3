"""One row per run of a results store: status, the verdict on each claim's own metric and on RTF,
memory by metric, fidelity, evidence and whether the variant engaged. The HTML report, the
summary notebook and `ttsopt report --json` all read this table; it needs the records only.

Verdict precedence for a run: not applicable, failed, needs real weights (its claim is about a
natural stop and the weights were random), not exercised here (applied, but its own evidence
shows it changed nothing), then the statistics of `core.stats` against the band that the A/A
run of the same design sets.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..core import claims as claims_mod
from ..core import records, stats
from ..core.vocab import MODELS_RUN_ID, Phase, Role, Side, Status, Verdict
from . import quality

ROLE_ORDER = {Role.AA: 0, Role.VARIANT: 1}
# Between two runs of one sitting there is only a kernel start, a load and at most a profiler
# pass; a longer silence in the records means the suite was stopped and resumed (or waited for a
# busy machine), and the machine the later runs met may not be the one the reference met.
PAUSE_S = 30 * 60


def fmt_ratio(ratio: float, low: float, high: float, n: int | None = None) -> str:
    """'×0.62 (0.58–0.66, n = 6)': the ratio variant / baseline, its interval and replicates."""
    if ratio is None or not np.isfinite(ratio):
        return "–"
    n_text = f", n = {n}" if n else ""
    if not np.isfinite(low):
        return f"×{ratio:.2f} (no interval{n_text})"
    if low == high and not n or n == 1:
        return f"×{ratio:.2f} (one measurement per side)"
    return f"×{ratio:.2f} ({low:.2f}–{high:.2f}{n_text})"


def verdict_text(verdict: str, n: int | None = None, unit: str = "") -> str:
    if verdict == Verdict.INCONCLUSIVE and n is not None:
        return f"inconclusive (n = {n}{' ' + unit if unit else ''})"
    return str(verdict)


def _status(recs: pd.DataFrame) -> tuple[str, str]:
    return records.run_status(recs[["status", "phase", "error"]].to_dict("records"))


def _first(recs: pd.DataFrame, column: str, phase: str | None = None):
    if column not in recs.columns:
        return None
    rows = recs if phase is None else recs[recs["phase"] == phase]
    values = rows[column].dropna()
    return values.iloc[-1] if len(values) else None


def _device_type(recs: pd.DataFrame) -> str:
    devices = [str(d) for d in recs["device"].dropna() if str(d) not in ("?", "")]
    return "cuda" if any(d.startswith("cuda") for d in devices) else "cpu"


def _claims(recs: pd.DataFrame) -> list[claims_mod.Claim]:
    load = recs[(recs["phase"] == Phase.LOAD) & (recs["side"] == Side.VARIANT)]
    text = _first(load, "claims")
    return claims_mod.loads(text) if text else []


def _engaged(recs: pd.DataFrame) -> tuple[bool | None, str, str]:
    ev = recs[recs["phase"] == Phase.EVIDENCE]
    if ev.empty:
        return None, "", ""
    engaged = ev["engaged"].astype(bool)
    idle = ev[~engaged]
    reason = str((idle if len(idle) else ev)["engaged_reason"].iloc[-1] or "")
    evidence = str(ev["evidence"].iloc[-1] or "")
    return bool(engaged.all()), reason, "" if evidence == "{}" else evidence


def _forced(recs: pd.DataFrame) -> bool:
    trials = recs[recs["phase"] == Phase.TRIAL]
    return "forced_tokens" in trials.columns and trials["forced_tokens"].notna().any()


def _lengths(recs: pd.DataFrame) -> str:
    t = recs[(recs["phase"] == Phase.TRIAL) & (recs["status"] == Status.OK)]
    if t.empty or t["audio_s"].isna().all():
        return ""
    a, n = t["audio_s"].astype(float), t["n_tokens"].astype(float)
    if a.min() == a.max():
        return f"{a.min():.1f} s of audio ({n.min():.0f} tokens)"
    return f"{a.min():.1f}–{a.max():.1f} s of audio ({n.min():.0f}–{n.max():.0f} tokens)"


def _memory(recs: pd.DataFrame) -> dict:
    """Median per side of each memory metric, e.g. mem_rss_resident_mb_baseline."""
    out = {}
    for col in [c for c in recs.columns if c.startswith("mem_") and c.endswith("_mb")]:
        for side in Side:
            v = pd.to_numeric(recs.loc[recs["side"] == side, col], errors="coerce").dropna()
            if len(v):
                out[f"{col}_{side}"] = float(v.median())
    return out


def _fidelity(recs: pd.DataFrame) -> dict:
    out = {}
    var = recs[recs["side"] == Side.VARIANT]
    trials, probes = var[var["phase"] == Phase.TRIAL], var[var["phase"] == Phase.FIDELITY]
    for name, frame, how in (("fid_token_match", trials, "mean"), ("fid_wav_snr_db", trials, "median"),
                             ("fid_mel_rel_err", probes, "max"), ("fid_vocoder_rel_err", probes, "max"),
                             ("fid_logit_rel_err", probes, "max")):
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
    if "fid_vocoder_rel_err" in fid:
        parts.append(f"vocoder error {fid['fid_vocoder_rel_err']:.2g}")
    if "fid_wav_snr_db" in fid:
        snr = fid["fid_wav_snr_db"]
        parts.append("identical audio" if snr >= 1e9 else f"audio SNR {snr:.0f} dB")
    return "; ".join(parts)


def _audio(recs: pd.DataFrame) -> dict:
    if "audio_path" not in recs.columns:
        return {}
    rows = recs.dropna(subset=["audio_path"])
    return {side: dict(zip(r["prompt_id"], r["audio_path"])) for side, r in rows.groupby("side")}


def _machine(recs: pd.DataFrame) -> tuple[float, bool]:
    load = pd.to_numeric(recs.get("machine_load", pd.Series(dtype=float)), errors="coerce").max()
    busy = False
    for text in recs.get("busy_processes", pd.Series(dtype=object)).dropna():
        try:
            busy |= sum(p.get("cpu_percent", 0) for p in json.loads(text)) > 25.0
        except (ValueError, TypeError, AttributeError):
            continue
    return (float(load) if np.isfinite(load) else math.nan), busy


def _compare(recs, design, metric_name, device_type, aa_offsets) -> stats.Comparison | str:
    """A comparison on METRIC_NAME, or why there is none."""
    metric = claims_mod.METRICS[metric_name]
    column = metric.column(device_type)
    if column is None:
        return f"{metric.label} is not measured on {device_type}"
    if metric.design and metric.design != design:
        return f"{metric.label} needs the {metric.design} design; this run was {design}"
    try:
        return stats.compare(recs, column, metric=metric_name, kind=metric.kind, phase=metric.phase,
                             design=design, aa_offset=aa_offsets.get((design, metric_name), 0.0))
    except ValueError as exc:
        return str(exc)


def _aa(runs: dict, status: dict) -> tuple[dict, dict, dict]:
    """Per (design, metric): the A/A comparison, and per design the A/A run id. Every metric a claim
    can name is compared, so a metric added to `core.claims.METRICS` gets its own band."""
    comparisons, offsets, ids = {}, {}, {}
    for rid, recs in runs.items():
        if str(recs["role"].iloc[0]) != Role.AA or status[rid][0] != Status.OK:
            continue
        design = str(recs["design"].dropna().iloc[0])
        ids[design] = rid
        for metric in claims_mod.METRICS:
            c = _compare(recs, design, metric, _device_type(recs), {})
            if isinstance(c, stats.Comparison):
                comparisons[(design, metric)] = c
                offsets[(design, metric)] = stats.aa_offset(c)
    return comparisons, offsets, ids


def _judge(claim_metric, recs, design, device_type, offsets, forced, engaged) -> tuple[str, dict]:
    """(verdict, numbers) of one claim metric for a variant run that completed."""
    metric = claims_mod.METRICS[claim_metric]
    if metric.natural_stop and forced:
        return Verdict.NEEDS_REAL_WEIGHTS, {"note": f"{metric.label}: random weights never stop by themselves, "
                                                    "so every length was forced"}
    if engaged is False:
        return Verdict.NOT_EXERCISED, {}
    c = _compare(recs, design, claim_metric, device_type, offsets)
    if isinstance(c, str):
        return Verdict.NOT_COMPARED, {"note": c}
    return c.verdict, c.as_dict()


def _row(rid, recs, status, offsets, aa_ids) -> dict:
    role, spec = str(recs["role"].iloc[0]), str(recs["variant"].iloc[0])
    design = str(recs["design"].dropna().iloc[0]) if recs["design"].notna().any() else ""
    st, reason = status
    device_type = _device_type(recs)
    claims = _claims(recs)
    engaged, engaged_reason, evidence = _engaged(recs)
    load, busy = _machine(recs)
    position = recs["suite_position"].dropna()
    row = {"run_id": rid, "variant": spec, "role": role, "design": design, "status": st, "reason": reason,
           "suite_position": int(position.iloc[0]) if len(position) else None,
           "claims": [c.text for c in claims], "claim": "; ".join(c.text for c in claims),
           "engaged": engaged, "engaged_reason": engaged_reason, "evidence": evidence,
           "lengths": _lengths(recs), "machine_load": load, "busy": busy,
           "verdict": "", "metric": "", "ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0,
           "unit": "", "band": math.nan, "p_value": math.nan, "note": "", "claim_verdicts": [],
           "aa_run": aa_ids.get(design, ""), "audio": _audio(recs), **_memory(recs), **_fidelity(recs),
           **quality.judge(recs)}
    rtf = _compare(recs, design, "rtf", device_type, offsets) if st == Status.OK else None
    if isinstance(rtf, stats.Comparison):
        keep = ("ratio", "ci_low", "ci_high", "n", "verdict")
        row.update({f"rtf_{k}": v for k, v in rtf.as_dict().items() if k in keep})
        row["baseline_rtf"], row["variant_rtf"] = rtf.baseline_median, rtf.variant_median
    if st == Status.NOT_APPLICABLE:
        row["verdict"] = Verdict.NOT_APPLICABLE
    elif st == Status.FAILED:
        row["verdict"] = Verdict.FAILED
    elif role == Role.AA:
        row.update(_aa_fields(rtf))
    else:
        _claims_verdicts(row, claims, recs, design, device_type, offsets, engaged)
        if design not in aa_ids:
            row["note"] = (row["note"] + "; " if row["note"] else "") + \
                f"no A/A run of the {design} design completed: the band is the minimum"
    row["verdict_text"] = verdict_text(row["verdict"], row["n"], row["unit"])
    if row["quality_loss"]:  # a faster variant that says fewer of the words is not simply faster
        row["verdict_text"] += ", quality loss"
    return row


def _aa_fields(rtf) -> dict:
    if not isinstance(rtf, stats.Comparison):
        return {"verdict": Verdict.NOT_COMPARED, "note": str(rtf or "")}
    keep = ("ratio", "ci_low", "ci_high", "n", "unit", "p_value")
    out = {"verdict": Verdict.NOISE_FLOOR, "metric": "rtf", **{k: v for k, v in rtf.as_dict().items() if k in keep}}
    out["unstable"] = stats.unstable(rtf)
    return out


def _claims_verdicts(row, claims, recs, design, device_type, offsets, engaged) -> None:
    forced = _forced(recs)
    metrics = [c.metric for c in claims] or ["rtf"]
    for i, (metric, claim) in enumerate(zip(metrics, claims or [None])):
        verdict, numbers = _judge(metric, recs, design, device_type, offsets, forced, engaged)
        row["claim_verdicts"].append({"metric": metric, "claim": claim.text if claim else "", "verdict": str(verdict),
                                      **{k: numbers.get(k) for k in ("ratio", "ci_low", "ci_high", "n", "unit")},
                                      "claimed": claim.ratio_range(numbers.get("baseline_median")) if claim else None})
        if i == 0:
            row.update(verdict=verdict, metric=metric, note=numbers.get("note", ""),
                       **{k: numbers[k] for k in ("ratio", "ci_low", "ci_high", "n", "unit", "band", "p_value")
                          if k in numbers})


def table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(one row per run, facts about the whole store: A/A per design, stability, drift, notes)."""
    facts: dict = {"aa": {}, "unstable": [], "notes": [], "drift": None, "busy_runs": [], "bands": {},
                   "paused_runs": {}}
    if not df.empty:  # a models comparison in the folder is shown on its own (`report.models`)
        df = df[df["run_id"] != MODELS_RUN_ID]
    if df.empty:
        return pd.DataFrame(), facts
    runs = {rid: recs for rid, recs in df.groupby("run_id", sort=False)}
    status = {rid: _status(recs) for rid, recs in runs.items()}
    aa, offsets, aa_ids = _aa(runs, status)
    for (design, metric), c in aa.items():
        facts["aa"].setdefault(design, {})[metric] = c.as_dict()
        if metric == "rtf":
            facts["bands"][design] = max(stats.DEFAULTS.min_effect, stats.aa_offset(c))
            if stats.unstable(c):
                facts["unstable"].append(design)
    if not aa_ids:
        facts["notes"].append("no A/A run completed: verdicts use the minimum band only")
    rows = [_row(rid, recs, status[rid], offsets, aa_ids) for rid, recs in runs.items()]
    out = pd.DataFrame(rows)
    out["fidelity"] = [describe_fidelity(r) for r in out.to_dict("records")]
    out["sentence"] = [sentence(r) for r in out.to_dict("records")]
    facts["busy_runs"] = [r["run_id"] for r in rows if r["busy"]]
    facts["paused_runs"] = after_pause(runs)
    for r in rows:
        if r["run_id"] in facts["paused_runs"]:
            later = f"measured {facts['paused_runs'][r['run_id']] / 3600:.1f} h after the reference run, after a pause"
            r["note"] = f"{r['note']}; {later}" if r["note"] else later
    facts["drift"] = _drift(out)
    order = out["role"].map(ROLE_ORDER).fillna(2)
    out = out.assign(_o=order, _p=out["suite_position"].fillna(1e9)).sort_values(["_o", "variant", "_p"])
    return out.drop(columns=["_o", "_p"]).reset_index(drop=True), facts


def after_pause(runs: dict[str, pd.DataFrame]) -> dict[str, float]:
    """{run_id: seconds from the reference run's last record to its first} for every run that
    started after a silence of over PAUSE_S since all earlier runs (a resumed suite)."""
    spans = []
    for rid, recs in runs.items():
        t = pd.to_datetime(recs.get("time_utc", pd.Series(dtype=object)), errors="coerce", utc=True).dropna()
        if len(t):
            spans.append((t.min(), t.max(), rid, (recs["suite_position"] == 0).any()))
    spans.sort()
    reference_end = next((end for _, end, _, ref in spans if ref), spans[0][1] if spans else None)
    out, latest, paused = {}, None, False
    for start, end, rid, _ in spans:
        paused |= latest is not None and (start - latest).total_seconds() > PAUSE_S
        if paused:
            out[rid] = max(0.0, (start - reference_end).total_seconds())
        latest = end if latest is None else max(latest, end)
    return out


def _drift(out: pd.DataFrame) -> dict | None:
    """Baseline sides' RTF and variants' ratios against their place in the suite."""
    if "baseline_rtf" not in out.columns:
        return None
    rho_b, p_b = stats.drift(out["suite_position"], out["baseline_rtf"])
    var = out[out["role"] == Role.VARIANT]
    rho_r, p_r = stats.drift(var["suite_position"], var.get("rtf_ratio", pd.Series(dtype=float)))
    return {"baseline_rtf_rho": rho_b, "baseline_rtf_p": p_b, "ratio_rho": rho_r, "ratio_p": p_r}


def sentence(row: dict) -> str:
    """The verdict in one plain sentence, for someone who reads no statistics."""
    text = _sentence(row)
    if row.get("quality_loss"):
        text += f" Quality loss: {row['quality_text']}."
    return text


def _sentence(row: dict) -> str:
    verdict = row["verdict"]
    metric = claims_mod.METRICS.get(row.get("metric") or "rtf")
    what = metric.label if metric else "RTF"
    ratio = fmt_ratio(row["ratio"], row["ci_low"], row["ci_high"], row.get("n") or None)
    if verdict == Verdict.NOT_APPLICABLE:
        return f"Not applicable on this machine: {row['reason']}."
    if verdict == Verdict.FAILED:
        return f"Failed: {row['reason']}."
    if verdict == Verdict.NOT_COMPARED:
        return f"Not compared: {row.get('note') or 'nothing to compare with'}."
    if verdict == Verdict.NEEDS_REAL_WEIGHTS:
        return (f"Needs real weights: its claim is about {what}, and with random weights every length is forced, "
                "so there is no natural stop to measure.")
    if verdict == Verdict.NOT_EXERCISED:
        return f"Not exercised here: applied, but {row['engaged_reason']}."
    if row["role"] == Role.AA:
        flag = (" Its interval excludes 1: the machine was not stable during this suite." if row.get("unstable")
                else "")
        return (f"The baseline against itself ({row['design']}): {ratio}. Differences this small are the "
                f"machine's noise, not an optimization.{flag}")
    band = f"±{row['band']:.0%}" if np.isfinite(row.get("band", math.nan)) else "the band"
    if verdict in (Verdict.FASTER, Verdict.SMALLER):
        return f"{str(verdict).capitalize()}: {what} {ratio} the baseline's ({1 - row['ratio']:.0%} less)."
    if verdict in (Verdict.SLOWER, Verdict.LARGER):
        return f"{str(verdict).capitalize()}: {what} {ratio} the baseline's ({row['ratio'] - 1:.0%} more)."
    if verdict == Verdict.NO_CHANGE:
        return f"No measurable change: {what} {ratio} the baseline's, the whole interval within {band}."
    return (f"Inconclusive with {row['n']} {row['unit']}: {what} {ratio} the baseline's; the interval reaches "
            f"past {band} without leaving it. More replicates would decide.")


def evidence_text(evidence: str, limit: int = 240) -> str:
    """A compact one-line form of the evidence JSON, cut at LIMIT characters."""
    try:
        text = json.dumps(json.loads(evidence), separators=(", ", ": "), default=str)
    except (ValueError, TypeError):
        text = evidence
    return text if len(text) <= limit else text[:limit - 1] + "…"


JSON_FIELDS = ("run_id", "variant", "role", "design", "status", "verdict", "metric", "ratio", "ci_low", "ci_high", "n",
               "unit", "band", "engaged", "engaged_reason", "reason", "lengths", "rtf_ratio", "rtf_ci_low",
               "rtf_ci_high", "rtf_n", "rtf_verdict", "claim_verdicts", "busy", "suite_position")


def as_json_rows(table_: pd.DataFrame) -> list[dict]:
    """One plain dict per run: the fields scripts read, plus every memory metric by name."""
    out = []
    for r in table_.to_dict("records"):
        row = {k: _plain(r.get(k)) for k in JSON_FIELDS}
        for k in ("n", "rtf_n", "suite_position"):  # counts, whatever pandas made of them
            row[k] = int(row[k]) if isinstance(row[k], (int, float)) else row[k]
        row.update({k: _plain(v) for k, v in r.items() if k.startswith("mem_")})
        row.update({k: _plain(v) for k, v in r.items() if k.startswith("fid_")})
        out.append(row)
    return out


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "value"):
        return value.value
    return value
