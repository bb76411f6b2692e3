"""cpu-int8: dynamic int8 linear layers (int8 weights, activations quantized per call).

T3's decode is a matrix-vector product per layer, bound by reading fp32 weights from memory;
int8 weights are a quarter of the bytes and x86 CPUs with VNNI multiply them natively.
`torch.ao.quantization.quantize_dynamic` is deprecated in favour of torchao but still works
in torch 2.11 (it warns once); torchao is not a dependency here.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

QUANTIZED = "torch.ao.nn.quantized.dynamic.modules.linear.Linear"


def quantize_linears(module: nn.Module) -> nn.Module:
    """Replace every nn.Linear under MODULE in place with its dynamic int8 counterpart."""
    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


def linear_counts(module: nn.Module) -> dict[str, int]:
    """How many linear layers are float and how many int8: the proof the swap happened."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    counts = {"float_linear": 0, "int8_dynamic_linear": 0}
    for m in module.modules():
        if isinstance(m, DynamicLinear):
            counts["int8_dynamic_linear"] += 1
        elif isinstance(m, nn.Linear):
            counts["float_linear"] += 1
    return counts


def linear_weight_bytes(module: nn.Module) -> int:
    """Bytes held by linear weights (int8 packed weights counted at one byte per value)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    total = 0
    for m in module.modules():
        if isinstance(m, DynamicLinear):
            w = m.weight()
            total += w.nelement() * w.element_size()
        elif isinstance(m, nn.Linear):
            total += m.weight.nelement() * m.weight.element_size()
    return total
