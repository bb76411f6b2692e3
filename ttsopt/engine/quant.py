"""Dynamic int8 linear layers (int8 weights, activations quantized per call): the one int8 path,
used by the cpu-int8 variants (and its alias torch-int8-t3).

T3's decode is a matrix-vector product per layer, bound by reading float32 weights from memory;
int8 weights are a quarter of the bytes and x86 CPUs with VNNI multiply them natively. Its
kernels (fbgemm, onednn) run on CPU only. `torch.ao.quantization.quantize_dynamic` is
deprecated in favour of torchao but still works in torch 2.11; torchao is not a dependency here.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_linears(module: nn.Module) -> nn.Module:
    """Replace every nn.Linear under MODULE in place with its dynamic int8 counterpart."""
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module
