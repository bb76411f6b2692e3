"""A minimal Llama forward over a static KV cache, built from T3's own LlamaModel modules.

Each decoder layer's q/k/v/o projections, rotary embedding, RMSNorms and MLP are called as
they are (so quantized or cast modules just work); only the cache and the attention call are
ours. No attention maps and no per-layer hidden states are returned: upstream asks for both
at every step and throws them away.

Two ways to address the cache:
- `start` an int: the new tokens go to slots [start, start + T) and attention reads exactly
  the filled slots — the same tensors, in the same order, as upstream's growing cache.
- `start` a (B,) tensor of per-row slots (T == 1): a scatter writes each row's token and a
  mask hides the unfilled tail, so every step has the same shapes (CUDA graphs, batches of
  prompts with different lengths).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb


class StaticKV:
    """Preallocated keys and values, (layers, batch, kv_heads, capacity, head_dim) each."""

    def __init__(self, config, batch: int, capacity: int, dtype, device, zeroed: bool = True):
        # Masked attention reads every slot, so unfilled ones must hold zeros (0 x garbage can
        # be NaN); sliced attention reads filled slots only and can skip zeroing a cache sized
        # for the longest utterance, whose pages the OS then commits only as they are written.
        new = torch.zeros if zeroed else torch.empty
        shape = (config.num_hidden_layers, batch, config.num_key_value_heads, capacity, config.head_dim)
        self.k = new(shape, dtype=dtype, device=device)
        self.v = new(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.size(3)


def forward(tfmr, h: torch.Tensor, cache: StaticKV, start) -> torch.Tensor:
    """Run inputs_embeds H (B, T, D) through every layer and the final norm; returns (B, T, D)."""
    B, T, _ = h.shape
    if isinstance(start, int):
        positions = torch.arange(start, start + T, device=h.device).unsqueeze(0)
        mask = None
        if T > 1:  # token t sees the cache before `start` and new tokens up to itself
            mask = torch.arange(start + T, device=h.device)[None, :] <= positions.view(T, 1)
    else:
        positions = start.view(B, 1)
        mask = (torch.arange(cache.capacity, device=h.device)[None, :] <= positions).view(B, 1, 1, -1)
    cos, sin = tfmr.rotary_emb(h, positions)
    for i, layer in enumerate(tfmr.layers):
        residual = h
        h = residual + _attention(layer.self_attn, layer.input_layernorm(h), cos, sin,
                                  cache.k[i], cache.v[i], start, mask)
        residual = h
        h = residual + layer.mlp(layer.post_attention_layernorm(h))
    return tfmr.norm(h)


def _attention(attn, x, cos, sin, k_cache, v_cache, start, mask):
    B, T, _ = x.shape
    shape = (B, T, -1, attn.head_dim)
    q = attn.q_proj(x).view(shape).transpose(1, 2)
    k = attn.k_proj(x).view(shape).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    if isinstance(start, int):
        k_cache[:, :, start:start + T] = k
        v_cache[:, :, start:start + T] = v
        keys, values = k_cache[:, :, :start + T], v_cache[:, :, :start + T]
    else:
        index = start.view(B, 1, 1, 1).expand(B, k.size(1), 1, k.size(3))
        k_cache.scatter_(2, index, k)
        v_cache.scatter_(2, index, v)
        keys, values = k_cache, v_cache
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                         enable_gqa=attn.num_key_value_groups > 1)
    return attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))
