"""Fidelity: how far a variant's output is from the baseline's on the same inputs.

The metrics; `ttsopt.experiment.probes` runs the pipelines that feed them. Five views, from
the inside out:
- token match under the same seed (T3's sampling path as a whole),
- teacher-forced T3 logits: both fed the baseline's tokens, relative error of the logits,
- S3Gen mel given the baseline's tokens and the same flow noise: relative error,
- the vocoder's waveform of the baseline's mel with the same source noise: relative error,
- the waveform: SNR against the baseline's, meaningful only when the tokens match.
Lossless variants show zero or float-rounding error; lossy ones show how much they lose.
"""
from __future__ import annotations

import numpy as np
import torch

EPS = 1e-12


def token_match(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Share of positions with the same token, over the longer sequence (a length change counts)."""
    a, b = reference.view(-1).cpu(), test.view(-1).cpu()
    n = max(a.numel(), b.numel())
    if n == 0:
        return 1.0
    m = min(a.numel(), b.numel())
    return float((a[:m] == b[:m]).sum().item()) / n


def rel_error(reference, test) -> float:
    """||test - reference|| / ||reference||; inf when the shapes differ."""
    a, b = torch.as_tensor(reference).float().cpu(), torch.as_tensor(test).float().cpu()
    if a.shape != b.shape:
        return float("inf")
    return float(torch.linalg.vector_norm(b - a) / (torch.linalg.vector_norm(a) + EPS))


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of TEST against REFERENCE in dB; inf when identical, nan on length mismatch."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    if reference.shape != test.shape:
        return float("nan")
    noise = float(np.sum((test - reference) ** 2))
    if noise == 0.0:
        return float("inf")
    return float(10 * np.log10((np.sum(reference ** 2) + EPS) / noise))


def compare_output(ref_tokens: torch.Tensor, ref_wav: np.ndarray, tokens: torch.Tensor, wav: np.ndarray) -> dict:
    """Token match and (where the tokens match) waveform SNR of one output against the baseline's
    output for the same prompt and seed."""
    same = torch.equal(ref_tokens.view(-1).cpu(), tokens.view(-1).cpu())
    return {"token_match": token_match(ref_tokens, tokens),
            "wav_snr_db": snr_db(ref_wav, wav) if same else float("nan")}


def compare_probe(reference: dict, probed: dict) -> tuple[dict, dict]:
    """(metrics, notes) of teacher-forced logits, mels, and the vocoder's waveforms of the same mel
    against the baseline's (a reference stored before the vocoder was probed has none)."""
    metrics = {"mel_rel_err": rel_error(reference["mel"], probed["mel"])}
    if "mel_wav" in reference and "mel_wav" in probed:
        metrics["vocoder_rel_err"] = rel_error(reference["mel_wav"], probed["mel_wav"])
    if "logits" in reference and "logits" in probed:
        metrics["logit_rel_err"] = rel_error(reference["logits"], probed["logits"])
        return metrics, {}
    return metrics, {"logit_note": "this variant's T3 runner cannot be teacher-forced"}
