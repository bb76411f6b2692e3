"""Upstream `T3.inference_turbo` (chatterbox-tts 0.1.7), split into prefill and decode; the same
tokens for the same seed.

Turbo's T3 is GPT-2 with no classifier-free guidance: one sequence, transformers' own KV
cache, and the logits processors upstream lists in its order (temperature, top-k, top-p,
repetition penalty). Prefill samples nothing: the first token is sampled in `decode`, so that
decode holds every sampling step, as the original model's runner does.

Length forcing (`n_tokens=N`) works as in `upstream.UpstreamT3`: ids at or above the S3
vocabulary are masked until N speech tokens exist, then speech stops, after the same N
forwards a natural stop after N tokens would take.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE
from chatterbox.models.t3.modules.cond_enc import T3Cond
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class TurboState:
    """What prefill hands to decode."""
    logits: torch.Tensor    # (1, V): the speech head's logits for the first token
    past: object            # GPT-2's KV cache
    bos: torch.Tensor       # (1, 1) start-of-speech token: the ids the first step's processors see
    len_cond: int
    text_len: int


@dataclass
class Prefilled:
    out: object             # GPT2Model's output, its KV cache included
    logits: torch.Tensor    # (1, V): the first token's logits
    bos: torch.Tensor
    length: int             # positions: conditioning, text and start-of-speech
    len_cond: int
    text_len: int


def prefill_inputs(t3, t3_cond: T3Cond, text_tokens: torch.Tensor):
    """`inference_turbo`'s prefill inputs: (embeds (1, L, D) of conditioning, text and start-of-speech,
    bos (1, 1), len_cond, text tokens (1, T))."""
    text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=t3.device)
    bos = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
    embeds, len_cond = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens,
                                               speech_tokens=bos, cfg_weight=0.0)
    return embeds, bos, len_cond, text_tokens


def prefill(t3, t3_cond: T3Cond, text_tokens: torch.Tensor) -> Prefilled:
    """`inference_turbo`'s prefill: conditioning, text and the start-of-speech token through GPT-2."""
    embeds, bos, len_cond, text_tokens = prefill_inputs(t3, t3_cond, text_tokens)
    out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
    logits = t3.speech_head(out[0][:, -1:])[:, -1, :]
    return Prefilled(out, logits, bos, embeds.size(1), len_cond, text_tokens.size(-1))


def processors(s) -> LogitsProcessorList:
    """`inference_turbo`'s processors for sampling settings S, in upstream's order."""
    chain = LogitsProcessorList()
    if s.temperature > 0 and s.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(s.temperature))
    if s.top_k > 0:
        chain.append(TopKLogitsWarper(s.top_k))
    if s.top_p < 1.0:
        chain.append(TopPLogitsWarper(s.top_p))
    if s.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
    return chain


class UpstreamTurboT3:
    name = "upstream-turbo"

    def __init__(self, t3):
        self.t3 = t3
        self.analyzer_factory = None  # upstream runs no alignment analyzer for Turbo
        self.forwards = 0             # transformer forwards after prefill, over this runner's life

    def prefill(self, t3_cond: T3Cond, text_tokens: torch.Tensor, s) -> TurboState:
        p = prefill(self.t3, t3_cond, text_tokens)
        return TurboState(p.logits, p.out.past_key_values, p.bos, p.len_cond, p.text_len)

    def _step(self, token: torch.Tensor, past):
        self.forwards += 1
        out = self.t3.tfmr(inputs_embeds=self.t3.speech_emb(token), past_key_values=past, use_cache=True)
        return self.t3.speech_head(out[0])[:, -1, :], out.past_key_values

    def decode(self, state: TurboState, s, n_tokens: int | None = None) -> torch.Tensor:
        """Speech tokens, the stop token included when T3 (or the forced length) ended speech."""
        return torch.cat(list(self.blocks(state, s, n_tokens)), dim=1)

    def blocks(self, state: TurboState, s, n_tokens: int | None = None):
        """Upstream's loop as a stream of (1, 1) tokens, each yielded as soon as it is drawn."""
        stop = self.t3.hp.stop_speech_token
        chain = processors(s)
        logits, past = state.logits, state.past
        predicted: list[torch.Tensor] = []
        # upstream samples once after prefill, then up to max_gen_len more after a forward each
        steps = s.max_new_tokens + 1 if n_tokens is None else n_tokens + 1
        for i in range(steps):
            if n_tokens is not None and i == n_tokens:
                yield torch.full_like(state.bos, stop)
                return
            if n_tokens is not None:
                logits = logits.clone()
                logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
            ids = state.bos if not predicted else torch.cat(predicted, dim=1)
            processed = chain(ids, logits)
            if i > 0 and torch.all(processed == -float("inf")):
                return  # upstream gives up when every id is masked
            token = torch.multinomial(torch.softmax(processed, dim=-1), num_samples=1)
            predicted.append(token)
            yield token
            if token.view(-1) == stop or i == steps - 1:
                return
            logits, past = self._step(token, past)

    def score(self, state: TurboState, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the logits (n, V) T3 gives at each step when fed TOKENS, before any
        sampling processor."""
        logits, past = state.logits, state.past
        steps = []
        flat = tokens.view(-1).tolist()
        for i, token in enumerate(flat):
            steps.append(logits[0].float())
            if i == len(flat) - 1:
                break
            logits, past = self._step(torch.tensor([[token]], dtype=torch.long, device=state.bos.device), past)
        return torch.stack(steps)
