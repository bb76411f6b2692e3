"""One configurable T3 runner that the T3 variants share, so they compose in any order.

`LeanT3` is upstream's decode loop (inherited unchanged from `pipeline.UpstreamT3`) over a
forward of its own instead of `T3HuggingfaceBackend`: upstream's backend asserts that no
cache is passed at prefill (so a preallocated static cache cannot enter) and insists on all
hidden states. With its defaults `LeanT3` asks for exactly what upstream asks for and gives
the same tokens; each variant then changes one setting:
- `cache`: "dynamic" (upstream) or "static" (a preallocated transformers StaticCache);
- `attention_maps`: False stops asking for attention maps and per-layer hidden states;
- `step_context`: a context manager factory entered around prefill and decode (the SDPA
  kernel choice, autocast);
and the alignment analyzer's lifecycle (forced runs, hook removal) is kept here, around
`decode`, where a synthesis ends.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
from transformers import StaticCache
from transformers.models.llama.modeling_llama import LlamaModel

from ..pipeline import T3State, UpstreamT3
from .base import NotApplicable

# transformers 5.24 renamed LlamaModel's `past_key_values` argument and output to `cache`; the
# lent GPU machine's image has 5.17, so both spellings are served.
_CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


@dataclass
class _Output:
    logits: object
    past_key_values: object


class _Forward:
    """Called like upstream's backend: transformer, then the speech head on the last hidden state
    (upstream reads `hidden_states[-1]`, which transformers ties to `last_hidden_state`)."""

    def __init__(self, runner: "LeanT3", max_len: int):
        self.runner, self.max_len = runner, max_len

    def __call__(self, inputs_embeds, past_key_values=None, use_cache=True, output_attentions=False,
                 output_hidden_states=False, return_dict=True):
        r, t3 = self.runner, self.runner.t3
        cache = past_key_values
        if cache is None and r.cache == "static":
            cache = StaticCache(config=t3.tfmr.config, max_cache_len=self.max_len)
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states) \
            if r.attention_maps else {}
        out = t3.tfmr(inputs_embeds=inputs_embeds, **{_CACHE_ARG: cache}, use_cache=True, **flags)
        r.last_cache = out.cache if hasattr(out, "cache") else out.past_key_values
        return _Output(t3.speech_head(out.last_hidden_state), r.last_cache)


class LeanT3(UpstreamT3):
    name = "lean"

    def __init__(self, t3):
        super().__init__(t3)
        self.cache = "dynamic"
        self.attention_maps = True
        self.step_contexts: list = []   # factories of context managers, entered in order
        self.last_cache = None

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for factory in self.step_contexts:
            stack.enter_context(factory())
        return stack

    def prefill(self, t3_cond, text_tokens, s) -> T3State:
        if self.analyzer is not None and hasattr(self.analyzer, "close"):
            self.analyzer.close()  # a synthesis that failed before decode ended left it open
        with self._context():
            return self._prefill(t3_cond, text_tokens, s)

    def _prefill(self, t3_cond, text_tokens, s) -> T3State:
        t3 = self.t3
        text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=t3.device)
        start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, len_cond = t3.prepare_input_embeds(
            t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=s.cfg_weight)
        self.analyzer = self.analyzer_factory(t3, len_cond, text_tokens.size(-1)) if self.analyzer_factory else None
        bos = torch.tensor([[t3.hp.start_speech_token]], dtype=torch.long, device=embeds.device)
        bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
        inputs = torch.cat([embeds, torch.cat([bos_embed, bos_embed])], dim=1)
        # The static cache holds the prompt plus every step decode may take (max_new_tokens + the stop).
        self.backend = _Forward(self, max_len=inputs.size(1) + s.max_new_tokens + 1)
        output = self.backend(inputs_embeds=inputs, past_key_values=None, use_cache=True,
                              output_attentions=True, output_hidden_states=True, return_dict=True)
        return T3State(output, output.past_key_values, bos, len_cond, text_tokens.size(-1), s.cfg_weight)

    def decode(self, state, s, n_tokens=None):
        analyzer = self.analyzer
        if analyzer is not None and hasattr(analyzer, "begin"):
            analyzer.begin(forced=n_tokens is not None)
        try:
            with self._context():
                return super().decode(state, s, n_tokens=n_tokens)
        finally:
            if analyzer is not None and hasattr(analyzer, "close"):
                analyzer.close()


def lean_runner(pipeline, variant: str) -> LeanT3:
    """The pipeline's LeanT3, put in place of upstream's runner on first use. Keeps an analyzer
    factory already set, so the T3 variants apply in any order."""
    current = pipeline.t3
    if isinstance(current, LeanT3):
        return current
    if type(current) is not UpstreamT3:
        raise NotApplicable(variant, f"T3 is already run by {type(current).__name__}, "
                            "which the T3 variants do not configure")
    lean = LeanT3(current.t3)
    lean.analyzer_factory = current.analyzer_factory
    pipeline.t3 = lean
    return lean
