"""One Turbo (GPT-2) block as a plain function of its tensors, scripted for CPU decode steps.

Why: Turbo's int8 decode step is 24 blocks of small ops on one row, and run from Python each op
pays the interpreter and the Python-to-C++ crossing: beside the int8 products, the layer norms,
the tanh GELU, the cache writes and the residual adds were a visible share of the step in
`torch.profiler`. TorchScript runs the same ops from C++, and takes the dynamic int8 linears'
packed weights as they are (`torch.compile` does not trace them; see `scripted` for the Llama
layer, whose reasons are the same).

The function is `gpt2_step.forward`'s block op for op: LayerNorm as `F.layer_norm`, the fused
q/k/v projection split three ways, SDPA over the filled cache slots, the dynamic int8 linear as
`DynamicLinear.forward` (bias inside the packed weight), and `NewGELUActivation.forward`'s tanh
GELU. CPU fusion in the TorchScript executor is off by default, so the results are bit for bit
the eager ones (a test pins this).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _qlinear(x: Tensor, w: torch.classes.quantized.LinearPackedParamsBase, reduce_range: bool) -> Tensor:
    return torch.ops.quantized.linear_dynamic(x, w, reduce_range).to(x.dtype)


def _gelu_new(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def block_int8(h: Tensor, ln1_w: Tensor, ln1_b: Tensor, ln2_w: Tensor, ln2_b: Tensor, eps1: float, eps2: float,
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
    out = F.scaled_dot_product_attention(q, k_cache[:, :, :start + T], v_cache[:, :, :start + T],
                                         attn_mask=mask, scale=scale)
    h = h + _qlinear(out.transpose(1, 2).reshape(B, T, -1), c_proj, reduce_range)
    x = F.layer_norm(h, [D], ln2_w, ln2_b, eps2)
    return h + _qlinear(_gelu_new(_qlinear(x, c_fc, reduce_range)), mlp_proj, reduce_range)


SCRIPTED = {"int8": torch.jit.script(block_int8)}
