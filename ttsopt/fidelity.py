"""Fidelity: how far a variant's output is from the baseline's on the same inputs.

The baseline run stores what it produced (`save_reference`); a variant run, in its own
process, loads that and measures itself against it. Four views, from the inside out:
- token match under the same seed (T3's sampling path as a whole),
- teacher-forced T3 logits: both fed the baseline's tokens, relative error of the logits,
- S3Gen mel given the baseline's tokens and the same flow noise: relative error,
- the waveform: SNR against the baseline's, meaningful only when the tokens match.
With real weights, speaker similarity through the model's own voice encoder is added.
Lossless variants show zero or float-rounding error; lossy ones show how much they lose.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .pipeline import Pipeline, Sampling

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


def _path(directory, prompt_id: str, seed: int) -> Path:
    return Path(directory) / f"{prompt_id}.seed{seed}.pt"


def save_reference(directory, prompt_id: str, seed: int, synthesis, extra: dict | None = None) -> Path:
    """Store the baseline's output for (prompt, seed); EXTRA holds logits/mels from `probe`."""
    path = _path(directory, prompt_id, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"tokens": synthesis.tokens, "raw_tokens": synthesis.raw_tokens,
               "wav": torch.from_numpy(synthesis.wav), **(extra or {})}
    tmp = path.with_suffix(".part")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_reference(directory, prompt_id: str, seed: int) -> dict | None:
    path = _path(directory, prompt_id, seed)
    return torch.load(path, weights_only=True) if path.is_file() else None


def compare_output(reference: dict, synthesis) -> dict:
    """Fidelity of one synthesis against the stored baseline output of the same (prompt, seed)."""
    same_tokens = torch.equal(reference["tokens"], synthesis.tokens)
    return {
        "fid_token_match": token_match(reference["tokens"], synthesis.tokens),
        "fid_wav_snr_db": snr_db(reference["wav"].numpy(), synthesis.wav) if same_tokens else float("nan"),
    }


@torch.inference_mode()
def probe(pipeline: Pipeline, text: str, tokens: torch.Tensor, seed: int, sampling: Sampling | None = None) -> dict:
    """Teacher-forced logits and the mel S3Gen makes from TOKENS, with the flow noise fixed by SEED.

    A variant whose T3 runner cannot score (no `score` method) gets no logits, and says so."""
    s = sampling or pipeline.sampling
    out: dict = {}
    conds = pipeline.conditioning()
    if hasattr(pipeline.t3, "score"):
        torch.manual_seed(seed)
        state = pipeline.t3.prefill(conds.t3, pipeline.text_to_tokens(text), s)
        out["logits"] = pipeline.t3.score(state, tokens.to(pipeline.device)).float().cpu()
    torch.manual_seed(seed)
    out["mel"] = pipeline.flow(tokens.to(pipeline.device), conds).float().cpu()
    return out


def compare_probe(reference: dict, probed: dict) -> dict:
    result = {"fid_mel_rel_err": rel_error(reference["mel"], probed["mel"])}
    if "logits" in reference and "logits" in probed:
        result["fid_logit_rel_err"] = rel_error(reference["logits"], probed["logits"])
    else:
        result["fid_logit_note"] = "this variant's T3 runner cannot be teacher-forced"
    return result


def speaker_similarity(pipeline: Pipeline, reference_wav: np.ndarray, test_wav: np.ndarray, sr: int) -> float:
    """Cosine similarity of the model's own voice-encoder embeddings (real weights only)."""
    import librosa
    ve = pipeline.model.tts.ve
    wavs = [librosa.resample(np.asarray(w, np.float32), orig_sr=sr, target_sr=16_000) for w in (reference_wav, test_wav)]
    a, b = (ve.embeds_from_wavs([w], sample_rate=16_000) for w in wavs)
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + EPS))
