"""fast-t3: upstream's T3 sampling loop without its overheads.

What upstream pays per token and this loop does not: a transformers forward that records 31
hidden states and asks for attention maps, a KV cache grown by `torch.cat` (a copy of the
whole cache per layer per step), a fresh backend object per utterance, logits processors that
gather a growing id list, and a host read of the sampled token at every step.

Here: a static KV cache written in place (`llama_step`), sampling as device tensor ops
(`sampling`), EOS read back every `eos_every` steps with the overshoot discarded, and on CUDA
the whole step — forward, CFG, processors and the draw — replayed as one CUDA graph
(`cuda_graph`). Same seed, same tokens as `pipeline.UpstreamT3` on CPU, natural stop included.

With upstream's alignment analyzer (the multilingual model runs it on every step; a runner's
`analyzer_factory`, as `UpstreamT3`'s), the prefill is upstream's eager one, whose attention maps
the analyzer's hooks read, and each step taps the three analyzed layers' inputs so that
`alignment.attention_rows` gives the analyzer the rows upstream's eager attention would have;
the analyzer then edits the CFG-combined logits where upstream's loop lets it. Such steps run
eagerly (a CUDA graph cannot hand rows to the host analyzer each step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import alignment, llama_step, native, sampling
from .lean import output_cache
from .upstream import prefill_inputs


@dataclass
class FastState:
    cache: llama_step.StaticKV
    logits: torch.Tensor   # (2, V) logits of the first step, cond row then uncond row
    length: int            # cache slots filled: conditioning, text and the start-of-speech token
    len_cond: int
    text_len: int
    cfg_weight: float


class FastT3:
    """Drop-in for `pipeline.t3`: `prefill(t3_cond, text_tokens, s)`, `decode(state, s, n_tokens)`.

    `eos_every`: how many steps pass between host reads of the sampled tokens in natural-stop
    runs. On CPU reading a token costs nothing and extra draws would shift the global RNG that
    S3Gen's noise comes from, so the default is 1 there; on CUDA it is 8 (a sync per 8 tokens).
    `graphs`: capture the decode step as a CUDA graph (CUDA only; the default there unless compiled).
    `compiled`: run the decode step's layers through `torch.compile` (`compiled.plan`) instead.
    """
    name = "fast-t3"

    def __init__(self, t3, *, eos_every: int | None = None, graphs: bool | None = None, compiled: bool = False):
        self.t3 = t3
        cuda = t3.device.type == "cuda"
        self.eos_every = eos_every or (8 if cuda else 1)
        self.graphs = (cuda and not compiled) if graphs is None else graphs
        if self.graphs and not cuda:
            raise ValueError("CUDA graphs need the model on a CUDA device")
        if self.graphs and compiled:
            raise ValueError("a compiled step and a hand-captured CUDA graph are two ways to the same end: pick one")
        self.compiled = None       # a llama_step plan whose layers run through torch.compile
        if compiled:
            from . import compiled as compiled_mod
            self.compiled = compiled_mod.plan(t3.tfmr)
        self.graph = None          # cuda_graph.GraphDecoder, built on first use
        self.steps = 0             # decode steps run (eager and replayed), for evidence
        self.host_reads = 0        # times the sampled tokens were read back by the host
        self.forwards = 0          # transformer forwards after prefill
        self.analyzer_factory = None  # upstream's alignment analyzer, as `UpstreamT3` holds it
        self.analyzer = None       # this synthesis' `alignment.AnalyzerRun`
        self.analyzed = 0          # steps whose attention rows the analyzer was handed
        self.kv_dtype = None       # the cache's dtype: None keeps the activations' (`half-kv` sets float16)

    def prepare(self) -> None:
        """Build now what the first decode step would otherwise build: the step's plan (on a CPU
        with per-channel int8 weights, their joined copies, the TorchScript layers and the native
        op). Called once every variant is applied, inside the timed load: a first synthesis no
        longer pays for the plan (oneDNN's kernels per shape, TorchScript's profiling runs and a
        CUDA graph are still built on first use), and the joined weights are resident after load."""
        if self.compiled is None:
            llama_step.plan_for(self.t3.tfmr)

    # --- prefill -------------------------------------------------------------------------
    def prefill(self, t3_cond, text_tokens: torch.Tensor, s) -> FastState:
        """Upstream's prefill (same embeddings, same LlamaModel call), then its K/V copied into
        a cache with room for the whole utterance."""
        t3 = self.t3
        if s.cfg_weight <= 0 or torch.atleast_2d(text_tokens).size(0) != 2:
            raise ValueError("fast-t3 decodes with classifier-free guidance: cfg_weight > 0 and "
                             "two text rows (as the pipeline's text_to_tokens stage makes them)")
        inputs, _, len_cond, text_tokens = prefill_inputs(t3, t3_cond, text_tokens, s.cfg_weight)
        self._close_analyzer()  # a synthesis that failed before decode ended left it open
        if self.analyzer_factory is not None:  # switches the model to eager attention until closed
            self.analyzer = self.analyzer_factory(t3, len_cond, text_tokens.size(-1))
        out = t3.tfmr(inputs_embeds=inputs, use_cache=True, output_attentions=self.analyzer is not None)
        length = inputs.size(1)
        capacity = self.capacity_for(length, s.max_new_tokens)
        if self._graphed:
            cache = self._graph_decoder(capacity).cache
        else:
            cache = llama_step.StaticKV(t3.tfmr.config, 2, capacity, self.kv_dtype or inputs.dtype, inputs.device,
                                        zeroed=False)
        for i, layer in enumerate(output_cache(out).layers):
            cache.k[i, :, :, :length] = layer.keys
            cache.v[i, :, :, :length] = layer.values
        logits = t3.speech_head(out.last_hidden_state[:, -1:])[:, -1]
        return FastState(cache, logits, length, len_cond, text_tokens.size(-1), s.cfg_weight)

    @property
    def _graphed(self) -> bool:
        """This synthesis decodes through the CUDA graph: graphs on and no analyzer to feed per step."""
        return self.graphs and self.analyzer is None

    @staticmethod
    def capacity_for(length: int, max_new_tokens: int) -> int:
        # Rounded up so CUDA graphs are captured per bucket, not per utterance.
        return -(-(length + max_new_tokens + 1) // 256) * 256

    # --- decode ----------------------------------------------------------------------------
    def decode(self, state: FastState, s, n_tokens: int | None = None) -> torch.Tensor:
        """Raw tokens (1, n): with N, exactly N speech tokens then the stop token; without,
        up to and including the first stop token, or max_new_tokens tokens."""
        if self._graphed:
            return self._graph_decoder(state.cache.capacity).decode(self, state, s, n_tokens)
        return torch.cat(list(self.blocks(state, s, n_tokens)), dim=1)

    def blocks(self, state: FastState, s, n_tokens: int | None = None):
        """Eager decode as a stream: yields (1, b) token blocks as soon as they are final
        (every step when forced, every `eos_every` steps otherwise). Streaming reads this."""
        analyzer = self.analyzer
        if analyzer is not None:
            analyzer.begin(forced=n_tokens is not None)
        try:
            yield from self._blocks(state, s, n_tokens)
        finally:
            self._close_analyzer()

    def _close_analyzer(self) -> None:
        if self.analyzer is not None:
            self.analyzer.close()
        self.analyzer = None

    def _blocks(self, state: FastState, s, n_tokens: int | None):
        t3, analyzer = self.t3, self.analyzer
        stop = t3.hp.stop_speech_token
        forced = n_tokens is not None
        steps = n_tokens if forced else s.max_new_tokens
        seen = torch.zeros(1, state.logits.size(-1), dtype=torch.bool, device=state.logits.device)
        seen[0, t3.hp.start_speech_token] = True
        logits, pending, last = state.logits, [], t3.hp.start_speech_token
        plan = self.compiled or llama_step.plan_for(t3.tfmr)  # once per decode: no variant swaps modules within one
        for i in range(steps):
            combined = sampling.cfg_combine(logits, s.cfg_weight)
            if analyzer is not None:  # where upstream's loop runs it: after CFG, before the processors
                combined = analyzer.step(combined, next_token=last)
            probs = torch.softmax(sampling.warp(combined, seen, s, forced), dim=-1)
            token = sampling.draw(probs)
            if analyzer is not None:
                last = int(token)
            pending.append(token)
            seen.scatter_(1, token, True)
            self.steps += 1
            if forced:
                yield pending.pop()
            elif len(pending) == self.eos_every or i == steps - 1:
                block = torch.cat(pending, dim=1)
                pending = []
                stops = (block[0] == stop).nonzero()
                self.host_reads += 1
                if stops.numel():
                    yield block[:, :int(stops[0]) + 1]  # the overshoot past the stop is dropped
                    return
                yield block
            # After the last forced token too: upstream runs this forward, whose logits a natural
            # run reads its stop token from, so both do the same work for the same length.
            logits = self._step(self._embed(token, i), state.cache, state.length + i, plan)
            self.forwards += 1
        if forced:
            yield torch.full_like(state.logits[:1, :1], stop, dtype=torch.long)

    def _embed(self, token: torch.Tensor, i: int) -> torch.Tensor:
        """The input of the step after the I-th speech token TOKEN (1, 1): its embedding at position
        i + 1, for the conditional and unconditional rows alike."""
        t3 = self.t3
        return (t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)).expand(2, -1, -1)

    def _step(self, embed: torch.Tensor, cache: llama_step.StaticKV, start: int, plan: llama_step.Plan) -> torch.Tensor:
        tfmr, analyzer = self.t3.tfmr, self.analyzer
        taps = None if analyzer is None else {layer: None for layer, _ in analyzer.heads}
        h = llama_step.forward(tfmr, embed, cache, start, plan=plan, taps=taps)
        if analyzer is not None:
            analyzer.attend(alignment.attention_rows(tfmr, taps, analyzer.heads, cache.k, start))
            self.analyzed += 1
        return self.t3.speech_head(h)[:, -1]

    # --- teacher-forced scoring ------------------------------------------------------------
    def score(self, state: FastState, tokens: torch.Tensor) -> torch.Tensor:
        """CFG-combined logits (n, V) for each step of a given token sequence: row j is what
        step j samples from (before the processors), computed as decode computes it, one token
        at a time through the decode step's plan. Dynamic int8 linear layers quantize a call's
        input with one scale over all its rows, so one forward over all the tokens
        (`score_one_forward`) gives int8 logits another error than decoding makes."""
        t3 = self.t3
        self._close_analyzer()  # opened by the prefill; scoring hands it nothing
        tokens = torch.atleast_2d(tokens).to(device=state.logits.device, dtype=torch.long)
        plan = self.compiled or llama_step.plan_for(t3.tfmr)
        rows = [state.logits]
        for i in range(tokens.size(1) - 1):
            rows.append(self._step(self._embed(tokens[:, i:i + 1], i), state.cache, state.length + i, plan))
        # interleaved (cond, uncond) pairs per step, as cfg_combine expects
        return sampling.cfg_combine(torch.cat(rows), state.cfg_weight)

    def score_one_forward(self, state: FastState, tokens: torch.Tensor) -> torch.Tensor:
        """`score`'s rows from one forward over all n - 1 inputs (the layers' own forward, not the
        decode step's plan): the same logits in float, others with dynamic int8 linear layers
        (`scripts/score-paths.py` measures how far apart)."""
        t3 = self.t3
        self._close_analyzer()
        tokens = torch.atleast_2d(tokens).to(device=state.logits.device, dtype=torch.long)
        n = tokens.size(1)
        rows = [state.logits]
        if n > 1:
            prev = tokens[:, :n - 1]
            pos = torch.arange(1, n, device=prev.device)
            embed = t3.speech_emb(prev) + t3.speech_pos_emb.emb(pos)[None]
            h = llama_step.forward(t3.tfmr, embed.expand(2, -1, -1), state.cache, state.length)
            rows.append(t3.speech_head(h).transpose(0, 1).reshape(-1, state.logits.size(-1)))
        return sampling.cfg_combine(torch.cat(rows), state.cfg_weight)

    # --- CUDA ----------------------------------------------------------------------------------
    def _graph_decoder(self, capacity: int):
        from .cuda_graph import GraphDecoder
        if self.graph is None or self.graph.cache.capacity < capacity:
            self.graph = GraphDecoder(self.t3, capacity)
        return self.graph

    def evidence(self) -> dict:
        # the graph is built by the first synthesis that decodes through it (none with an analyzer)
        decode = ("cuda-graph" if self.graph is not None
                  else "compiled static-kv" if self.compiled else "eager static-kv")
        plan = self.compiled or llama_step.plan_for(self.t3.tfmr)
        return {"decode": decode, "layer_step": plan.kind, **native.evidence(plan), "steps": self.steps,
                **({"compile": self.compiled.scripted[0].evidence()} if self.compiled is not None else {}),
                "host_reads": self.host_reads, "forwards": self.forwards, "eos_every": self.eos_every,
                **({"analyzed_steps": self.analyzed} if self.analyzed else {}),
                **({"kv_dtype": str(self.kv_dtype).replace("torch.", "")} if self.kv_dtype else {}),
                **({"graph": self.graph.evidence()} if self.graph is not None else {})}
