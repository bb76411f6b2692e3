"""What weights occupy, by dtype, with quantized linears counted in their own packed format.

One counter for every place that needs it: the memory columns of the records, the bench's
memory floor, and the evidence of the quantizing variants.
"""
from __future__ import annotations

import torch
from torch import nn

_MIB = 2**20


def _dynamic_int8():
    from torch.ao.nn.quantized.dynamic import Linear
    return Linear


def _conv1d():
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layer, its weight transposed
    return Conv1D


def _linear_tensors(m: nn.Module) -> list[torch.Tensor]:
    """The tensors a linear layer holds, whatever its format (None where it has none)."""
    if isinstance(m, _dynamic_int8()):
        return [m.weight(), m.bias()]
    if isinstance(m, _conv1d()):
        return [m.weight, m.bias]
    if _is_int4(m):  # its buffers: packed weights and their scales, whichever kernel's layout
        return [*m.buffers(recurse=False), m.bias]
    if isinstance(m, nn.Linear):  # bitsandbytes' layers subclass it, with packed weights
        state = getattr(m.weight, "quant_state", None)  # nf4 block scales
        return [m.weight, m.bias, getattr(state, "absmax", None), getattr(m.weight, "SCB", None)]
    return []


def _is_int4(m: nn.Module) -> bool:
    """engine.quant's Int4Linear, known by what it holds (this floor does not import the engine)."""
    return type(m).__name__ == "Int4Linear" and hasattr(m, "packed")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def by_dtype(module: nn.Module) -> dict[str, int]:
    """Bytes of every parameter, buffer and packed weight under MODULE, per dtype name."""
    out: dict[str, int] = {}
    for t in _tensors(module):
        out[_name(t.dtype)] = out.get(_name(t.dtype), 0) + t.numel() * t.element_size()
    return out


def _tensors(module: nn.Module, linear_only: bool = False) -> list[torch.Tensor]:
    """Each tensor once. Packed weights are unpacked into new tensors, which are kept in the list
    while it lives, so an id is never reused by the next one."""
    seen: dict[int, torch.Tensor] = {}
    for m in module.modules():
        for t in _linear_tensors(m):
            if isinstance(t, torch.Tensor):
                seen.setdefault(id(t), t)
    if not linear_only:
        for t in list(module.parameters()) + list(module.buffers()):
            seen.setdefault(id(t), t)
    return list(seen.values())


def total(module: nn.Module) -> int:
    return sum(by_dtype(module).values())


def linear_bytes(module: nn.Module) -> int:
    """Bytes of the weights and biases of the linear layers under MODULE, in their own format."""
    return sum(t.numel() * t.element_size() for t in _tensors(module, linear_only=True))


def linear_counts(module: nn.Module) -> dict[str, int]:
    """How many linear layers of each kind MODULE holds: the proof a swap happened. Linears joined
    into one int8 matrix (engine.quant's JoinedLinear) count as their parts, not as that matrix."""
    counts: dict[str, int] = {}
    joined = {id(m.linear) for m in module.modules() if type(m).__name__ == "JoinedLinear"}
    for m in module.modules():
        if id(m) in joined:
            continue
        if isinstance(m, (nn.Linear, _dynamic_int8(), _conv1d())) or _is_int4(m) or type(m).__name__ == "JoinedPart":
            kind = f"{type(m).__module__}.{type(m).__name__}"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def as_metrics(modules: dict[str, nn.Module]) -> dict[str, float]:
    """`params_mb` and `params_<dtype>_mb` over MODULES (shared tensors counted once)."""
    holder = nn.Module()
    for name, m in modules.items():
        holder.add_module(name.replace(".", "_"), m)
    per = by_dtype(holder)
    out = {f"params_{k}_mb": v / _MIB for k, v in sorted(per.items())}
    out["params_mb"] = sum(per.values()) / _MIB
    return out
