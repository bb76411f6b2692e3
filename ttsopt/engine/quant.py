"""Dynamic int8 linear layers (int8 weights, activations quantized per call): the one int8 path,
used by the cpu-int8 variants (and its alias torch-int8-t3).

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
