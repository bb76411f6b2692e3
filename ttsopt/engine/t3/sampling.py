"""Upstream's T3 sampling as plain tensor ops: CFG combine, length-forcing mask, repetition
penalty, temperature, min-p, top-p, softmax, one categorical draw per row.

Every op is elementwise the one upstream runs (`T3.inference` with transformers' processors),
so the same logits give the same probabilities bit for bit. The differences are in form only:
the repetition penalty reads a running "seen" mask instead of gathering a growing id list
(same values: a token is penalised once however often it occurs), and nothing here reads a
value back to the host, so the whole step can live inside a CUDA graph.
"""
from __future__ import annotations

import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE


def cfg_combine(logits: torch.Tensor, cfg_weight: float) -> torch.Tensor:
    """(2N, V) rows ordered cond, uncond, cond, uncond, ... -> (N, V)."""
    pairs = logits.view(-1, 2, logits.size(-1))
    cond, uncond = pairs[:, 0], pairs[:, 1]
    cfg = torch.as_tensor(cfg_weight, device=cond.device, dtype=cond.dtype)
    return cond + cfg * (cond - uncond)


def warp(logits: torch.Tensor, seen: torch.Tensor, s, forced: torch.Tensor | bool) -> torch.Tensor:
    """Upstream's order: forcing mask, repetition penalty, temperature, min-p, top-p.

    `forced` masks the special ids (start/stop of speech and the unused tail) for the rows
    where it is true; a bool applies to all rows without a device tensor.
    """
    if forced is True:
        logits = logits.clone()
        logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
    elif forced is not False:
        special = torch.arange(logits.size(-1), device=logits.device) >= SPEECH_VOCAB_SIZE
        logits = logits.masked_fill(special & forced.view(-1, 1), -float("inf"))
    p = float(s.repetition_penalty)
    logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
    if s.temperature != 1.0:
        logits = logits / s.temperature
    probs = torch.softmax(logits, dim=-1)
    # transformers also keeps the top token explicitly; probs < min_p * max never removes it.
    logits = logits.masked_fill(probs < s.min_p * probs.amax(dim=-1, keepdim=True), -float("inf"))
    if s.top_p < 1.0:
        # At top_p == 1 transformers only removes tokens whose probability is exactly 0,
        # which the final softmax gives 0 anyway, so the sort is skipped.
        sorted_logits, order = torch.sort(logits, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - s.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return logits


def draw(probs: torch.Tensor, generators=None) -> torch.Tensor:
    """One token per row: (N, V) probabilities -> (N, 1) ids.

    `torch.multinomial` per (1, V) row, with that row's generator (None: the global RNG),
    consumes each generator exactly as upstream's single multinomial call does.
    """
    if generators is None:
        return torch.multinomial(probs, num_samples=1)
    return torch.cat([torch.multinomial(probs[i:i + 1], num_samples=1, generator=g)
                      for i, g in enumerate(generators)])


def draw_in_graph(probs: torch.Tensor) -> torch.Tensor:
    """multinomial's own single-sample algorithm (an exponential race: argmax p / Exp(1)),
    written out so it has no host-side check and can be captured in a CUDA graph. On CPU it
    consumes the RNG exactly like `torch.multinomial(probs, 1)` (tests pin this)."""
    race = torch.empty_like(probs).exponential_(1)
    return (probs / race).argmax(dim=-1, keepdim=True)


def warp_turbo(logits: torch.Tensor, seen: torch.Tensor, s, forced: bool) -> torch.Tensor:
    """Turbo's processors (`turbo.processors`) as tensor ops, in upstream's order: forcing mask,
    temperature, top-k, top-p, repetition penalty — each the op transformers' processor runs."""
    if forced:
        logits = logits.clone()
        logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
    if s.temperature > 0 and s.temperature != 1.0:
        logits = logits / s.temperature
    if s.top_k > 0:
        k = min(s.top_k, logits.size(-1))
        logits = logits.masked_fill(logits < torch.topk(logits, k)[0][..., -1, None], -float("inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - s.top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    if s.repetition_penalty != 1.0:
        p = float(s.repetition_penalty)
        logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
    return logits
