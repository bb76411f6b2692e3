"""Upstream `T3.inference` (chatterbox-tts 0.1.7), split into prefill and decode; the same tokens for
the same seed.

Kept faithful on purpose, costs included: the backend is rebuilt per call and every step asks
for attention maps and all hidden states, as upstream does.

Length forcing (`n_tokens=N`): tokens at or above the S3 vocabulary (start/stop of speech and
the unused ids) are masked until exactly N speech tokens exist, then speech stops. The loop
runs the same N forwards as upstream would with a natural stop after N tokens: the last
forward's logits are where a natural run would read its stop token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE
from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
from chatterbox.models.t3.modules.cond_enc import T3Cond
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)


@dataclass
class T3State:
    """What prefill hands to decode."""
    output: object          # the model output holding the first step's logits
    past: object            # the KV cache
    bos: torch.Tensor
    len_cond: int
    text_len: int
    cfg_weight: float


def prefill_inputs(t3, t3_cond: T3Cond, text_tokens: torch.Tensor, cfg_weight: float):
    """Upstream's prefill inputs: conditioning, text and the start-of-speech token, embedded.
    Returns (inputs_embeds (2, L, D), bos (1, 1), len_cond, text tokens (2, T))."""
    text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=t3.device)
    start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
    embeds, len_cond = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start,
                                               cfg_weight=cfg_weight)
    bos = torch.tensor([[t3.hp.start_speech_token]], dtype=torch.long, device=embeds.device)
    bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
    return torch.cat([embeds, torch.cat([bos_embed, bos_embed])], dim=1), bos, len_cond, text_tokens


class UpstreamT3:
    name = "upstream"

    def __init__(self, t3):
        self.t3 = t3
        self.analyzer_factory = None  # upstream's alignment analyzer: the multilingual model's, or a variant's
        self.analyzer = None
        self.forwards = 0             # transformer forwards after prefill, over this runner's life

    def _backend(self, analyzer):
        t3 = self.t3
        return T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb,
                                    speech_head=t3.speech_head, alignment_stream_analyzer=analyzer)

    def prefill(self, t3_cond: T3Cond, text_tokens: torch.Tensor, s) -> T3State:
        inputs, bos, len_cond, text_tokens = prefill_inputs(self.t3, t3_cond, text_tokens, s.cfg_weight)
        self._close_analyzer()  # a synthesis that failed before decode ended left it open
        if self.analyzer_factory is not None:
            self.analyzer = self.analyzer_factory(self.t3, len_cond, text_tokens.size(-1))
        self.backend = self._backend(self.analyzer)
        output = self.backend(inputs_embeds=inputs, past_key_values=None, use_cache=True,
                              output_attentions=True, output_hidden_states=True, return_dict=True)
        return T3State(output, output.past_key_values, bos, len_cond, text_tokens.size(-1), s.cfg_weight)

    def _close_analyzer(self) -> None:
        if self.analyzer is not None and hasattr(self.analyzer, "close"):
            self.analyzer.close()
        self.analyzer = None

    def _step(self, token: torch.Tensor, position: int, past):
        t3 = self.t3
        embed = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(position)
        self.forwards += 1
        return self.backend(inputs_embeds=torch.cat([embed, embed]), past_key_values=past,
                            output_attentions=True, output_hidden_states=True, return_dict=True)

    def decode(self, state: T3State, s, n_tokens: int | None = None) -> torch.Tensor:
        return torch.cat(list(self.blocks(state, s, n_tokens)), dim=1)

    def blocks(self, state: T3State, s, n_tokens: int | None = None):
        """Upstream's loop as a stream of (1, 1) tokens, each yielded as soon as it is drawn, the stop
        token (natural or forced) last: streaming the upstream model reads this, `decode` joins it."""
        analyzer = self.analyzer
        if analyzer is not None and hasattr(analyzer, "begin"):
            analyzer.begin(forced=n_tokens is not None)
        try:
            yield from self._tokens(state, s, n_tokens)
        finally:
            if analyzer is not None and hasattr(analyzer, "close"):
                analyzer.close()

    def _tokens(self, state: T3State, s, n_tokens: int | None):
        t3 = self.t3
        stop = t3.hp.stop_speech_token
        rep = RepetitionPenaltyLogitsProcessor(penalty=float(s.repetition_penalty))
        min_p, top_p = MinPLogitsWarper(min_p=s.min_p), TopPLogitsWarper(top_p=s.top_p)
        generated = state.bos.clone()
        output, past = state.output, state.past
        steps = s.max_new_tokens if n_tokens is None else n_tokens + 1
        for i in range(steps):
            if n_tokens is not None and i == n_tokens:
                yield torch.full_like(generated[:, :1], stop)
                return
            logits_step = output.logits[:, -1, :]
            cond, uncond = logits_step[0:1, :], logits_step[1:2, :]
            cfg = torch.as_tensor(s.cfg_weight, device=cond.device, dtype=cond.dtype)
            logits = cond + cfg * (cond - uncond)
            if self.analyzer is not None:
                logits = self.analyzer.step(logits, next_token=generated[0, -1].item())
            if n_tokens is not None:
                logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
            ids = generated[:1, ...]
            logits = rep(ids, logits)
            if s.temperature != 1.0:
                logits = logits / s.temperature
            logits = top_p(ids, min_p(ids, logits))
            next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
            generated = torch.cat([generated, next_token], dim=1)
            yield next_token
            if next_token.view(-1) == stop:
                return
            output = self._step(next_token, i + 1, past)
            past = output.past_key_values

    def score(self, state: T3State, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the CFG-combined logits (n, V) T3 gives at each step when fed TOKENS,
        before any sampling processor. Fidelity compares these across variants."""
        output, past = state.output, state.past
        steps = []
        try:
            for i, token in enumerate(tokens.view(-1).tolist()):
                logits_step = output.logits[:, -1, :].float()
                steps.append(logits_step[0] + state.cfg_weight * (logits_step[0] - logits_step[1]))
                if i == tokens.numel() - 1:
                    break
                output = self._step(torch.tensor([[token]], dtype=torch.long, device=state.bos.device), i + 1, past)
                past = output.past_key_values
        finally:
            self._close_analyzer()  # opened by the prefill; scoring hands it nothing
        return torch.stack(steps)
