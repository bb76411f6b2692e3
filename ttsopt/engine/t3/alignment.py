"""Upstream's AlignmentStreamAnalyzer, one synthesis at a time. Upstream runs it in every
multilingual decode (the multilingual baseline holds one: `factory`); the alignment-analyzer
variant puts it on the English T3.

It reads three attention heads each step and edits the logits: EOS is suppressed while the
text is not yet spoken, and forced when it sees a long tail, a repetition, or the same token
twice in a row. Two upstream behaviours are contained here:
- upstream registers forward hooks on every synthesis and never removes them, and switches the
  whole transformer to eager attention for good, so each synthesis in a process costs more than
  the last; here the hooks are removed and the attention setting restored when decode ends
  (`close`), so every trial does the work of one synthesis;
- under length forcing the forced length wins: the analyzer runs and is timed, but its logit
  edits are discarded, and the steps where it would have forced EOS are counted
  (`wanted_stop`), so a forced run does the same work as a natural one of that length.
The tiny test model has 4 heads per layer; upstream's heads (15, 11, 2) are taken modulo the
head count there, and the log says so.

fast-t3's step returns no attention maps and never calls the hooked modules: it taps the three
layers' inputs instead, and `attention_rows` computes from them and the cache the rows upstream's
eager attention would have handed the hooks (`AnalyzerRun.attend`).
"""
from __future__ import annotations

import contextlib

import torch
from chatterbox.models.t3.inference import alignment_stream_analyzer as asa
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ...measure.timing import Stopwatch

_FORCED_EOS = 2**15  # the logit upstream gives EOS when it forces a stop


@contextlib.contextmanager
def _aligned_heads(heads):
    original = asa.LLAMA_ALIGNED_HEADS
    asa.LLAMA_ALIGNED_HEADS = heads
    try:
        yield
    finally:
        asa.LLAMA_ALIGNED_HEADS = original


class AnalyzerRun:
    """One synthesis' analyzer: upstream's, plus timing, counting and clean removal."""

    def __init__(self, log: dict, t3, len_cond: int, text_len: int):
        tfmr, cfg = t3.tfmr, t3.tfmr.config
        self.log, self.cfg, self.eos = log, cfg, t3.hp.stop_speech_token
        self.saved = (cfg._attn_implementation, cfg.output_attentions)
        heads = [(layer, head % cfg.num_attention_heads) for layer, head in asa.LLAMA_ALIGNED_HEADS]
        targets = {layer: tfmr.layers[layer].self_attn for layer, _ in heads}
        before = {layer: set(m._forward_hooks) for layer, m in targets.items()}
        with _aligned_heads(heads):
            self.inner = asa.AlignmentStreamAnalyzer(tfmr, None, text_tokens_slice=(len_cond, len_cond + text_len),
                                                     alignment_layer_idx=9, eos_idx=self.eos)
        # Upstream keeps no handles; the hook ids it added are found by difference.
        self.hooks = [(m, key) for layer, m in targets.items() for key in m._forward_hooks
                      if key not in before[layer]]
        log.update(syntheses=log.get("syntheses", 0) + 1, heads=heads,
                   heads_remapped=heads != list(asa.LLAMA_ALIGNED_HEADS),
                   hooks_installed=len(self.hooks), attention_during_analysis=cfg._attn_implementation,
                   steps=0, step_s=0.0, wanted_stop=0, first_wanted_stop=None, forced_run=False)
        self.forced = False
        self.heads = heads

    def attend(self, rows: list[torch.Tensor]) -> None:
        """This step's attention rows of the analyzer's heads (`attention_rows`), for a step whose
        layers did not run the hooked modules."""
        self.inner.last_aligned_attns[:] = rows

    def begin(self, forced: bool) -> None:
        self.forced = forced
        self.log["forced_run"] = forced

    def step(self, logits, next_token=None):
        if any(a is None for a in self.inner.last_aligned_attns):
            raise RuntimeError("the alignment analyzer saw no attention maps: its hooked layers did not "
                               "return attention weights (eager attention is required)")
        kept = logits.clone() if self.forced else None
        clock = Stopwatch(logits.device)
        out = self.inner.step(logits, next_token=next_token)
        log = self.log
        log["step_s"] += clock.elapsed()
        if bool(out[..., self.eos].max() >= _FORCED_EOS):
            log["wanted_stop"] += 1
            if log["first_wanted_stop"] is None:
                log["first_wanted_stop"] = log["steps"]
        log["steps"] += 1
        return kept if self.forced else out

    def close(self) -> None:
        for module, key in self.hooks:
            for table in (module._forward_hooks, module._forward_hooks_with_kwargs,
                          module._forward_hooks_always_called):
                table.pop(key, None)
        self.hooks = []
        self.cfg._attn_implementation, self.cfg.output_attentions = self.saved




def attention_rows(tfmr, inputs: dict[int, torch.Tensor], heads, k_cache: torch.Tensor,
                   position: int) -> list[torch.Tensor]:
    """For each (layer, head) of HEADS, the first row's (the conditioned one's) attention weights
    (1, position + 1) of its token at POSITION over the cache, as upstream's eager attention hands
    them to the analyzer's hooks: softmax(q K^T * scaling) in float32, q from the layer's input
    INPUTS[layer] through the layer's own norm, q projection and rotary embedding, K that layer's
    cached keys (rotated when written, the new token's included; K_CACHE as `llama_step.StaticKV.k`).
    The same arithmetic as the step's own attention, in another order."""
    rows = []
    where = torch.tensor([[position]], device=k_cache.device)
    cos, sin = tfmr.rotary_emb(inputs[heads[0][0]], where)  # one position for every layer
    for layer, head in heads:
        block = tfmr.layers[layer]
        attn = block.self_attn
        x = block.input_layernorm(inputs[layer][:1, -1:])
        q = attn.q_proj(x).view(1, 1, -1, attn.head_dim).transpose(1, 2)[:, head:head + 1]
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
        keys = k_cache[layer, :1, head:head + 1, :position + 1].to(q.dtype)  # a half cache read widened
        scores = torch.matmul(q, keys.transpose(2, 3)) * attn.scaling
        rows.append(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)[0, 0])
    return rows


def factory(log: dict):
    """What a runner's `analyzer_factory` holds: a new `AnalyzerRun` per synthesis, all logging to LOG."""
    log.setdefault("syntheses", 0)
    return lambda t3, len_cond, text_len: AnalyzerRun(log, t3, len_cond, text_len)
