"""Dynamic int8 linear layers (int8 weights, activations quantized per call): the one int8 path,
used by the cpu-int8 variants (and its alias torch-int8-t3). And group-wise int4 weights
(`Int4Linear`, the cpu-int4-t3 variant): half the bytes of int8 again.

T3's decode is a matrix-vector product per layer, bound by reading float32 weights from memory;
int8 weights are a quarter of the bytes and x86 CPUs with VNNI multiply them natively. Its
kernels (fbgemm, onednn) run on CPU only. `torch.ao.quantization.quantize_dynamic` is
deprecated in favour of torchao but still works in torch 2.11; torchao is not a dependency here.

GPT-2 (Turbo's T3) keeps its projections in transformers' `Conv1D`, a linear layer with its
weight stored transposed, which `quantize_dynamic` does not know: each is first turned into the
`nn.Linear` it is (the same function, the weight transposed once), then quantized like the rest.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def as_linears(module: nn.Module) -> int:
    """Replace every transformers `Conv1D` under MODULE in place with the equivalent nn.Linear;
    returns how many were replaced."""
    from transformers.pytorch_utils import Conv1D
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_features, out_features = child.weight.shape
                linear = nn.Linear(in_features, out_features, bias=child.bias is not None,
                                   device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def quantize_linears(module: nn.Module) -> nn.Module:
    """Replace every nn.Linear (and GPT-2 `Conv1D`) under MODULE in place with its dynamic int8
    counterpart."""
    from torch.ao.quantization import quantize_dynamic
    as_linears(module)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


# --- int4 ------------------------------------------------------------------------------------------
# Group-wise asymmetric int4 weights through torch's own CPU kernel (`_weight_int4pack_mm_for_cpu`,
# the one gpt-fast and torchao's CPU int4 path call): per group of GROUP input features a scale and
# a zero point, weights packed two to a byte. The kernel multiplies bfloat16 activations (with
# float32 ones it was several times slower than a float32 linear on the EPYC box, in a
# microbenchmark), so a layer casts its input to bfloat16 and its output back.
INT4_GROUP = 64


def int4_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and \
        hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


class Int4Linear(nn.Module):
    """nn.Linear with int4 weights in groups of `group` input features (bias kept in float)."""

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP):
        super().__init__()
        out_features, in_features = linear.weight.shape
        if in_features % group:
            raise ValueError(f"int4 groups of {group} do not divide {in_features} input features")
        self.in_features, self.out_features, self.group = in_features, out_features, group
        w = linear.weight.detach().float().reshape(-1, group)
        high, low = w.amax(dim=1, keepdim=True), w.amin(dim=1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-6)
        q = ((w - low) / scale).round().clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
        zero = low + scale * 8  # the kernel dequantizes (q - 8) * scale + zero
        scales_zeros = torch.cat([scale.reshape(out_features, -1, 1), zero.reshape(out_features, -1, 1)], dim=2)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.cpu(), 1))
        self.register_buffer("scales_zeros", scales_zeros.transpose(0, 1).contiguous().to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group, self.scales_zeros)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def weight_bytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + \
            self.scales_zeros.numel() * self.scales_zeros.element_size()


def quantize_int4(module: nn.Module, group: int = INT4_GROUP) -> int:
    """Replace every nn.Linear (and GPT-2 `Conv1D`) under MODULE in place with an `Int4Linear`;
    returns how many were replaced."""
    as_linears(module)
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int4Linear(child, group))
                replaced += 1
    return replaced
