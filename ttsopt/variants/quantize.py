"""Weight quantization of T3's transformer linears (q, k, v, o, gate, up, down in every layer).

- bnb-int8 / bnb-nf4: bitsandbytes' LLM.int8 (int8 weights, outlier columns in fp16) and
  4-bit NormalFloat; CUDA only (bitsandbytes quantizes when the weights move to the GPU).
- torch-int8-t3: the CPU counterpart, torch's own dynamic int8 quantization
  (`torch.ao.quantization.quantize_dynamic`: int8 weights, activations quantized per call),
  whose kernels (fbgemm/onednn) run on CPU only.
The heads, embeddings and S3Gen stay as they are. None of them is lossless. Evidence:
quantized module count and the linears' weight bytes before and after.
"""
from __future__ import annotations

import torch

from .base import Variant

_MIB = 2**20
_DYNAMIC_INT8 = torch.ao.nn.quantized.dynamic.Linear


def _linear_bytes(module: torch.nn.Module) -> int:
    """Bytes of the weights and biases of the linear layers in MODULE, whatever their format."""
    total = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):  # bitsandbytes' layers subclass it, with packed weights
            tensors = [m.weight, m.bias]
            state = getattr(m.weight, "quant_state", None)  # nf4 block scales
            tensors += [getattr(state, "absmax", None)]
            tensors += [getattr(m.weight, "SCB", None)]  # int8 row scales
        elif isinstance(m, _DYNAMIC_INT8):
            tensors = [m.weight(), m.bias()]
        else:
            continue
        total += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    return total


def _linear_types(module: torch.nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, _DYNAMIC_INT8)):
            kind = f"{type(m).__module__}.{type(m).__name__}"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


class Quantized(Variant):
    """Shared bookkeeping: bytes and module types before and after."""
    lossless = False

    def apply(self, pipeline) -> None:
        tfmr = pipeline.model.t3.tfmr
        before = _linear_bytes(tfmr)
        count = self.quantize(tfmr, pipeline.device)
        pipeline.quantized = {"variant": self.name, "modules_quantized": count,
                              "linear_weight_mb_before": round(before / _MIB, 3),
                              "linear_weight_mb_after": round(_linear_bytes(tfmr) / _MIB, 3)}

    def quantize(self, tfmr: torch.nn.Module, device: torch.device) -> int:
        raise NotImplementedError

    def evidence(self, pipeline) -> dict:
        return {**pipeline.quantized, "t3_linear_types": _linear_types(pipeline.model.t3.tfmr)}


class TorchInt8(Quantized):
    name = "torch-int8-t3"
    claim = "claimed 29–64% less VRAM (bitsandbytes quantization; this is its CPU counterpart)"
    requires = ("CPU",)
    conflicts = ("fp16", "bf16")

    def check(self, pipeline=None) -> str | None:
        if pipeline is not None and pipeline.device.type != "cpu":
            return f"torch's dynamic int8 kernels run on CPU; the model runs on {pipeline.device}"
        return super().check(pipeline)

    def quantize(self, tfmr, device) -> int:
        from torch.ao.quantization import quantize_dynamic
        quantize_dynamic(tfmr, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        return sum(isinstance(m, _DYNAMIC_INT8) for m in tfmr.modules())


class BitsAndBytes(Quantized):
    requires = ("CUDA", "package bitsandbytes")
    claim = "claimed 29–64% less VRAM (bitsandbytes quantization)"

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.conflicts = ("bnb-nf4",) if kind == "int8" else ("bnb-int8",)

    def quantize(self, tfmr, device) -> int:
        import bitsandbytes as bnb

        def replacement(lin: torch.nn.Linear) -> torch.nn.Module:
            weight = lin.weight.data.cpu()
            bias = lin.bias is not None
            if self.kind == "int8":
                q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias,
                                        has_fp16_weights=False, threshold=6.0)
                q.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
            else:
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=bias,
                                      compute_dtype=lin.weight.dtype if lin.weight.dtype != torch.float32
                                      else torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
            if bias:
                q.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
            return q.to(device)  # bitsandbytes quantizes here, on the move to the GPU

        count = 0
        for parent in list(tfmr.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, child_name, replacement(child))
                    count += 1
        return count


VARIANTS = [TorchInt8(), BitsAndBytes("bnb-int8", "int8"), BitsAndBytes("bnb-nf4", "nf4")]
