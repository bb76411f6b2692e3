"""One T3 decoder layer as plain functions of its tensors, scripted for CPU decode steps and
traced by `torch.compile` for the compiled step (`compiled`); and Turbo's GPT-2 block likewise
(`gpt2_block_int8`, run by `gpt2_step`).

Why: a CPU decode step is some seventy small ops per layer on two rows. Run from Python, each op
pays the interpreter and the Python-to-C++ crossing, a visible share of an int8 step; `ttsopt
bench` shows the step time either way (`layer_step` in fast-t3's evidence). TorchScript runs the same ops from
C++. It is in maintenance mode upstream, but it is the one tool in torch 2.11 that takes the
dynamic int8 linears' packed weights as they are: `torch.compile` does not trace those weights.
The float layer is also what the compiled step compiles (once, for every layer: the weights are
arguments), so both paths share one definition of the layer.

Each function is `llama_step`'s layer op for op (RMSNorm as `LlamaRMSNorm.forward`, rotary
as `apply_rotary_pos_emb`, the int8 linear as `DynamicLinear.forward`), and CPU fusion in the
TorchScript executor is off by default, so the results are bit for bit the eager ones
(tests pin this). Only the int-slot cache form is scripted; per-row slots use the eager step.

The GPT-2 block is `gpt2_step.forward`'s block op for op: LayerNorm as `F.layer_norm`, the fused
q/k/v projection split three ways, SDPA over the filled cache slots, the int8 linear as above
(its bias inside the packed weight), and `NewGELUActivation.forward`'s tanh GELU; a test holds
it bit for bit to the eager block.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.size(-1) // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attend(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor,
           start: int, mask: Tensor | None, scale: float, head_dim: int) -> Tensor:
    """Projections in, attention output out (before o_proj): rotary, cache write, SDPA."""
    B, T = q.size(0), q.size(1)
    q = q.view(B, T, -1, head_dim).transpose(1, 2)
    k = k.view(B, T, -1, head_dim).transpose(1, 2)
    v = v.view(B, T, -1, head_dim).transpose(1, 2)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = (q * cos) + (_rotate_half(q) * sin)
    k = (k * cos) + (_rotate_half(k) * sin)
    k_cache[:, :, start:start + T] = k
    v_cache[:, :, start:start + T] = v
    # A half cache (`half-kv`) is read widened to the queries' dtype; a float32 one as it is.
    out = F.scaled_dot_product_attention(q, k_cache[:, :, :start + T].to(q.dtype),
                                         v_cache[:, :, :start + T].to(q.dtype), attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(B, T, -1)


def _qlinear(x: Tensor, w: torch.classes.quantized.LinearPackedParamsBase, reduce_range: bool) -> Tensor:
    return torch.ops.quantized.linear_dynamic(x, w, reduce_range).to(x.dtype)


def layer_int8(h: Tensor, norm1: Tensor, eps1: float, norm2: Tensor, eps2: float,
               q: torch.classes.quantized.LinearPackedParamsBase, k: torch.classes.quantized.LinearPackedParamsBase,
               v: torch.classes.quantized.LinearPackedParamsBase, o: torch.classes.quantized.LinearPackedParamsBase,
               gate: torch.classes.quantized.LinearPackedParamsBase, up: torch.classes.quantized.LinearPackedParamsBase,
               down: torch.classes.quantized.LinearPackedParamsBase, reduce_range: bool,
               cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, start: int, mask: Tensor | None,
               scale: float, head_dim: int) -> Tensor:
    x = rms(h, norm1, eps1)
    a = attend(_qlinear(x, q, reduce_range), _qlinear(x, k, reduce_range), _qlinear(x, v, reduce_range),
               cos, sin, k_cache, v_cache, start, mask, scale, head_dim)
    h = h + _qlinear(a, o, reduce_range)
    x = rms(h, norm2, eps2)
    return h + _qlinear(F.silu(_qlinear(x, gate, reduce_range)) * _qlinear(x, up, reduce_range), down, reduce_range)


def layer_int8_joined(h: Tensor, norm1: Tensor, eps1: float, norm2: Tensor, eps2: float,
                      qkv: torch.classes.quantized.LinearPackedParamsBase,
                      o: torch.classes.quantized.LinearPackedParamsBase,
                      gate_up: torch.classes.quantized.LinearPackedParamsBase,
                      down: torch.classes.quantized.LinearPackedParamsBase, reduce_range: bool,
                      cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, start: int, mask: Tensor | None,
                      scale: float, head_dim: int) -> Tensor:
    """`layer_int8` with q, k and v read as one matrix, and gate and up as another (`quant.joined`):
    four int8 products per layer instead of seven, each output column computed as before."""
    x = rms(h, norm1, eps1)
    q, k, v = _qlinear(x, qkv, reduce_range).chunk(3, -1)
    a = attend(q, k, v, cos, sin, k_cache, v_cache, start, mask, scale, head_dim)
    h = h + _qlinear(a, o, reduce_range)
    x = rms(h, norm2, eps2)
    gate, up = _qlinear(x, gate_up, reduce_range).chunk(2, -1)
    return h + _qlinear(F.silu(gate) * up, down, reduce_range)


def layer_float(h: Tensor, norm1: Tensor, eps1: float, norm2: Tensor, eps2: float,
                q: Tensor, k: Tensor, v: Tensor, o: Tensor, gate: Tensor, up: Tensor, down: Tensor,
                cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, start: int,
                mask: Tensor | None, scale: float, head_dim: int) -> Tensor:
    x = rms(h, norm1, eps1)
    a = attend(F.linear(x, q), F.linear(x, k), F.linear(x, v), cos, sin, k_cache, v_cache, start, mask, scale,
               head_dim)
    h = h + F.linear(a, o)
    x = rms(h, norm2, eps2)
    return h + F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def _gelu_new(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_block_int8(h: Tensor, ln1_w: Tensor, ln1_b: Tensor, ln2_w: Tensor, ln2_b: Tensor, eps1: float,
                    eps2: float,
                    c_attn: torch.classes.quantized.LinearPackedParamsBase,
                    c_proj: torch.classes.quantized.LinearPackedParamsBase,
                    c_fc: torch.classes.quantized.LinearPackedParamsBase,
                    mlp_proj: torch.classes.quantized.LinearPackedParamsBase, reduce_range: bool,
                    k_cache: Tensor, v_cache: Tensor, start: int, mask: Tensor | None, scale: float,
                    head_dim: int) -> Tensor:
    B, T, D = h.size(0), h.size(1), h.size(2)
    x = F.layer_norm(h, [D], ln1_w, ln1_b, eps1)
    q, k, v = _qlinear(x, c_attn, reduce_range).split(D, dim=2)
    q = q.view(B, T, -1, head_dim).transpose(1, 2)
    k = k.view(B, T, -1, head_dim).transpose(1, 2)
    v = v.view(B, T, -1, head_dim).transpose(1, 2)
    k_cache[:, :, start:start + T] = k
    v_cache[:, :, start:start + T] = v
    # A half cache (`half-kv`) is read widened to the queries' dtype; a float32 one as it is.
    out = F.scaled_dot_product_attention(q, k_cache[:, :, :start + T].to(q.dtype),
                                         v_cache[:, :, :start + T].to(q.dtype), attn_mask=mask, scale=scale)
    h = h + _qlinear(out.transpose(1, 2).reshape(B, T, -1), c_proj, reduce_range)
    x = F.layer_norm(h, [D], ln2_w, ln2_b, eps2)
    return h + _qlinear(_gelu_new(_qlinear(x, c_fc, reduce_range)), mlp_proj, reduce_range)


# The TorchScript versions llama_step runs, per kind of linear weights (called functions are scripted with them).
SCRIPTED = {"float": torch.jit.script(layer_float), "int8": torch.jit.script(layer_int8),
            "int8-joined": torch.jit.script(layer_int8_joined)}
# And the one gpt2_step runs for Turbo's int8 blocks.
GPT2_INT8 = torch.jit.script(gpt2_block_int8)
