"""fast-t3 for Turbo: upstream's `inference_turbo` loop without its overheads.

What upstream pays per token and this loop does not: transformers' GPT2Model call (cache
bookkeeping, mask construction, per-module dispatch) over a KV cache grown by concatenation, and
logits processors that gather a growing id list. Here: GPT-2 over a static KV cache written in
place (`gpt2_step`), and Turbo's processors as tensor ops (`sampling.warp_turbo`). Prefill runs
upstream's inputs through the same step, the voice's conditioning once per voice. Same seed, same
tokens as `turbo.UpstreamTurboT3` on CPU, natural stop included (tests hold it to that).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from chatterbox.models.t3.modules.cond_enc import T3Cond

from . import gpt2_step, native, sampling, turbo


@dataclass
class FastTurboState:
    cache: gpt2_step.StaticKV
    logits: torch.Tensor   # (1, V): the first token's logits
    length: int            # cache slots filled: conditioning, text and start-of-speech
    bos: torch.Tensor
    len_cond: int
    text_len: int


@dataclass
class VoicePrefix:
    cond: torch.Tensor         # (1, len_cond, D) the conditioning embeddings they were computed from
    plan: gpt2_step.Plan       # and the modules that computed them
    kv: gpt2_step.StaticKV     # (layers, 1, heads, len_cond, head_dim)


class FastTurboT3:
    """Drop-in for Turbo's `pipeline.t3`: `prefill`, `decode`, `score`, counting its forwards."""
    name = "fast-t3-turbo"

    def __init__(self, t3):
        self.t3 = t3
        self.analyzer_factory = None
        self.plan: gpt2_step.Plan | None = None
        self.steps = 0
        self.forwards = 0
        self.voice: VoicePrefix | None = None  # the last voice's conditioning keys and values
        self.voice_hits = self.voice_misses = 0
        self.kv_dtype = None  # the cache's dtype: None keeps the activations' (`half-kv` sets float16)

    def prepare(self) -> None:
        """Build the step's plan now (as `FastT3.prepare`): inside the timed load, not in the first synthesis."""
        self._plan()

    def _plan(self) -> gpt2_step.Plan:
        if self.plan is None or not self.plan.current():  # a variant applied later swaps modules (int8)
            self.plan = gpt2_step.Plan(self.t3.tfmr)
        return self.plan

    def prefill(self, t3_cond: T3Cond, text_tokens: torch.Tensor, s) -> FastTurboState:
        """Upstream's prefill inputs, through the static-KV step in two parts: the conditioning (the
        voice's speaker embedding and prompt tokens, no text) and then the text and start-of-speech.
        A causal transformer's keys and values for a prefix depend on that prefix alone, so the
        conditioning's are computed once per voice (`_voice`) and copied into each utterance's cache;
        Turbo's conditioning (up to 375 prompt tokens) is most of its prefill."""
        t3 = self.t3
        embeds, bos, len_cond, text_tokens = turbo.prefill_inputs(t3, t3_cond, text_tokens)
        length, plan = embeds.size(1), self._plan()
        cache = gpt2_step.StaticKV(t3.tfmr.config, 1, length + s.max_new_tokens + 2, self.kv_dtype or embeds.dtype,
                                   embeds.device)
        voice = self._voice(embeds[:, :len_cond], plan)
        cache.k[:, :, :, :len_cond] = voice.kv.k
        cache.v[:, :, :, :len_cond] = voice.kv.v
        h = gpt2_step.forward(t3.tfmr, embeds[:, len_cond:], cache, len_cond, plan)
        logits = t3.speech_head(h[:, -1:])[:, -1, :]
        return FastTurboState(cache, logits, length, bos, len_cond, text_tokens.size(-1))

    def _voice(self, cond: torch.Tensor, plan: gpt2_step.Plan) -> VoicePrefix:
        """The conditioning's keys and values, kept while the same conditioning embeddings (compared
        by value: another voice, or other weights, gives others) come through the same plan."""
        kept = self.voice
        if kept is not None and kept.plan is plan and kept.cond.shape == cond.shape and torch.equal(kept.cond, cond):
            self.voice_hits += 1
            return kept
        kv = gpt2_step.StaticKV(self.t3.tfmr.config, 1, cond.size(1), cond.dtype, cond.device)
        gpt2_step.forward(self.t3.tfmr, cond, kv, 0, plan)
        self.voice = VoicePrefix(cond.clone(), plan, kv)
        self.voice_misses += 1
        return self.voice

    def _step(self, token: torch.Tensor, state: FastTurboState, i: int, plan: gpt2_step.Plan) -> torch.Tensor:
        self.forwards += 1
        return self._logits(token, state, i, plan)

    def _logits(self, token: torch.Tensor, state: FastTurboState, i: int, plan: gpt2_step.Plan) -> torch.Tensor:
        """The logits after the I-th token TOKEN (1, 1), its keys and values written at its place."""
        h = gpt2_step.forward(self.t3.tfmr, self.t3.speech_emb(token), state.cache, state.length + i, plan)
        return self.t3.speech_head(h)[:, -1, :]

    def decode(self, state: FastTurboState, s, n_tokens: int | None = None) -> torch.Tensor:
        return torch.cat(list(self.blocks(state, s, n_tokens)), dim=1)

    def blocks(self, state: FastTurboState, s, n_tokens: int | None = None):
        """Decode as a stream of (1, 1) tokens, each yielded as soon as it is drawn (streaming reads
        this); the stop token, natural or forced, is the last."""
        stop = self.t3.hp.stop_speech_token
        forced = n_tokens is not None
        steps = s.max_new_tokens + 1 if not forced else n_tokens + 1
        seen = torch.zeros_like(state.logits, dtype=torch.bool)
        seen[0, state.bos.view(-1)] = True  # upstream's first step sees the start token only
        logits, plan = state.logits, self._plan()  # once per decode: no variant swaps modules within one
        for i in range(steps):
            if forced and i == n_tokens:
                yield torch.full_like(state.bos, stop)
                return
            processed = sampling.warp_turbo(logits, seen, s, forced)
            if i > 0 and bool(torch.isneginf(processed).all()):  # a host read: free on CPU
                return  # upstream gives up when every id is masked
            token = sampling.draw(torch.softmax(processed, dim=-1))
            self.steps += 1
            yield token
            if i == 0:
                seen.zero_()  # from the second step on, upstream's ids are the sampled tokens alone
            seen.scatter_(1, token, True)
            if token.view(-1) == stop or i == steps - 1:
                return
            logits = self._step(token, state, i, plan)

    def score(self, state: FastTurboState, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the logits (n, V) at each step when fed TOKENS, computed as decode
        computes them, one token at a time through the step's plan (`FastT3.score` says why)."""
        tokens = torch.atleast_2d(tokens).to(device=state.logits.device, dtype=torch.long)
        plan, rows = self._plan(), [state.logits]
        for i in range(tokens.size(1) - 1):  # `_logits`, not `_step`: scoring is no decode forward
            rows.append(self._logits(tokens[:, i:i + 1], state, i, plan))
        return torch.cat(rows).float()

    def score_one_forward(self, state: FastTurboState, tokens: torch.Tensor) -> torch.Tensor:
        """`score`'s rows from one forward over all n - 1 inputs: the same logits in float, others
        with dynamic int8 linear layers (`scripts/score-paths.py`)."""
        tokens = torch.atleast_2d(tokens).to(device=state.logits.device, dtype=torch.long)
        rows = [state.logits]
        if tokens.size(1) > 1:
            h = gpt2_step.forward(self.t3.tfmr, self.t3.speech_emb(tokens[:, :-1]), state.cache, state.length,
                                  self._plan())
            rows.append(self.t3.speech_head(h)[0])
        return torch.cat(rows).float()

    def evidence(self) -> dict:
        plan = self._plan()
        return {"decode": "static-kv (GPT-2)", "layer_step": plan.kind, **native.evidence(plan), "steps": self.steps,
                "forwards": self.forwards, "voice_prefix": {"hits": self.voice_hits, "misses": self.voice_misses},
                **({"kv_dtype": str(self.kv_dtype).replace("torch.", "")} if self.kv_dtype else {})}
