"""The T3 decode step captured as one CUDA graph: forward, CFG, processors and the draw.

Requires CUDA; nothing here runs on the CPU test machine. Everything the step reads or writes
lives in static buffers (token, cache slot, speech position, seen mask, output row), so one
`replay()` advances generation by one token with no host work but the launch. Sampling
parameters are constants of a capture, so a graph is kept per parameter set; the cache has a
fixed capacity (a 256-slot bucket), and attention reads the whole of it under a mask.
"""
from __future__ import annotations

import torch

from ..graphs import capture
from . import llama_step, sampling


class GraphDecoder:
    def __init__(self, t3, capacity: int):
        self.t3 = t3
        dev, dt = t3.device, t3.speech_emb.weight.dtype
        self.cache = llama_step.StaticKV(t3.tfmr.config, 2, capacity, dt, dev)
        vocab = t3.hp.speech_tokens_dict_size
        self.token = torch.zeros(1, 1, dtype=torch.long, device=dev)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)      # cache slot of `token`
        self.speech_pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.seen = torch.zeros(1, vocab, dtype=torch.bool, device=dev)
        self.forced = torch.zeros(1, dtype=torch.bool, device=dev)
        self.out = torch.zeros(1, capacity, dtype=torch.long, device=dev)
        self.step = torch.zeros(1, dtype=torch.long, device=dev)
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.replays = 0

    def _sample(self, logits: torch.Tensor, s) -> None:
        warped = sampling.warp(sampling.cfg_combine(logits, s.cfg_weight), self.seen, s, self.forced)
        probs = torch.softmax(warped, dim=-1)
        token = sampling.draw_in_graph(probs)
        self.token.copy_(token)
        self.seen.scatter_(1, token, True)
        self.out.index_copy_(1, self.step, token)
        self.step.add_(1)

    def _forward_and_sample(self, s) -> None:
        t3 = self.t3
        embed = t3.speech_emb(self.token) + t3.speech_pos_emb.emb(self.speech_pos)[None]
        h = llama_step.forward(t3.tfmr, embed.expand(2, -1, -1), self.cache, self.slot.expand(2))
        self._sample(t3.speech_head(h)[:, -1], s)
        self.slot.add_(1)
        self.speech_pos.add_(1)

    def _graph(self, s) -> torch.cuda.CUDAGraph:
        key = (s.cfg_weight, s.repetition_penalty, s.temperature, s.min_p, s.top_p)
        if key not in self.graphs:
            # Warm-up writes the next free cache slot and the scratch buffers, all of which
            # decode() resets before they are read.
            self.graphs[key], _ = capture(lambda: self._forward_and_sample(s))
        return self.graphs[key]

    def _reset(self, state, forced: bool) -> None:
        self.slot.fill_(state.length)
        self.speech_pos.fill_(1)
        self.step.zero_()
        self.seen.zero_()
        self.seen[0, self.t3.hp.start_speech_token] = True
        self.forced.fill_(forced)

    def decode(self, owner, state, s, n_tokens):
        stop = self.t3.hp.stop_speech_token
        forced = n_tokens is not None
        steps = n_tokens if forced else s.max_new_tokens
        graph = self._graph(s)
        self._reset(state, forced)
        self._sample(state.logits, s)  # the first token comes from the prefill's logits
        owner.steps += 1
        checked = 0
        for i in range(1, steps + 1):
            if not forced and (i - checked == owner.eos_every or i == steps):
                owner.host_reads += 1
                stops = (self.out[0, checked:i] == stop).nonzero()
                if stops.numel():
                    return self.out[:, :checked + int(stops[0]) + 1].clone()
                checked = i
            if i == steps and not forced:
                break
            # Forced: one replay after the last token too, the forward upstream runs there (the
            # token it samples is past the length and dropped), so both do the same work.
            graph.replay()
            self.replays += 1
            owner.steps += 1
            owner.forwards += 1
        tokens = self.out[:, :steps].clone()
        if forced:
            tokens = torch.cat([tokens, torch.full_like(tokens[:, :1], stop)], dim=1)
        return tokens

    def evidence(self) -> dict:
        return {"captured": len(self.graphs), "replays": self.replays, "capacity": self.cache.capacity}
