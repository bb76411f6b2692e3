"""One configurable T3 runner that the T3 variants share, so they compose in any order.

`LeanT3` is upstream's decode loop (inherited unchanged from `upstream.UpstreamT3`) over a
forward of its own instead of `T3HuggingfaceBackend`: upstream's backend asserts that no
cache is passed at prefill (so a preallocated static cache cannot enter) and insists on all
hidden states. With its defaults `LeanT3` asks for exactly what upstream asks for and gives
the same tokens; each variant then changes one setting:
- `cache`: "dynamic" (upstream) or "static" (a preallocated transformers StaticCache);
- `attention_maps`: False stops asking for attention maps and per-layer hidden states;
- `step_contexts`: context manager factories entered around prefill, decode and scoring (the
  SDPA kernel choice, autocast);
and the alignment analyzer's lifecycle (forced runs, hook removal) is kept here, around
`decode`, where a synthesis ends.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

from transformers import StaticCache
from transformers.models.llama.modeling_llama import LlamaModel

from .upstream import T3State, UpstreamT3

# transformers 5.24 renamed LlamaModel's `past_key_values` argument and output to `cache`; the
# lent GPU machine's image has 5.17, so both spellings are served.
CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def output_cache(out):
    """The cache a LlamaModel call returned, under either spelling."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


@dataclass
class _Output:
    logits: object
    past_key_values: object


class _Forward:
    """Called like upstream's backend: transformer, then the speech head on the last hidden state
    (upstream reads `hidden_states[-1]`, which transformers ties to `last_hidden_state`)."""

    def __init__(self, runner: LeanT3):
        self.runner = runner

    def __call__(self, inputs_embeds, past_key_values=None, use_cache=True, output_attentions=False,
                 output_hidden_states=False, return_dict=True):
        r, t3 = self.runner, self.runner.t3
        cache = past_key_values
        if cache is None and r.cache == "static":
            # The prompt plus every step decode may take (max_new_tokens + the stop).
            cache = StaticCache(config=t3.tfmr.config, max_cache_len=inputs_embeds.size(1) + r.max_new_tokens + 1)
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states) \
            if r.attention_maps else {}
        out = t3.tfmr(inputs_embeds=inputs_embeds, **{CACHE_ARG: cache}, use_cache=True, **flags)
        r.last_cache = output_cache(out)
        return _Output(t3.speech_head(out.last_hidden_state), r.last_cache)


class LeanT3(UpstreamT3):
    name = "lean"

    def __init__(self, t3):
        super().__init__(t3)
        self.cache = "dynamic"
        self.attention_maps = True
        self.step_contexts: list = []   # factories of context managers, entered in order
        self.last_cache = None
        self.max_new_tokens = 0

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for factory in self.step_contexts:
            stack.enter_context(factory())
        return stack

    def _backend(self, analyzer):
        return _Forward(self)

    def prefill(self, t3_cond, text_tokens, s) -> T3State:
        self.max_new_tokens = s.max_new_tokens
        with self._context():
            return super().prefill(t3_cond, text_tokens, s)

    def decode(self, state, s, n_tokens=None):
        with self._context():
            return super().decode(state, s, n_tokens=n_tokens)

    def score(self, state, tokens):
        with self._context():
            return super().score(state, tokens)
