"""bitsandbytes weight quantization of T3's transformer linears (q, k, v, o, gate, up, down in
every layer): LLM.int8 (int8 weights, outlier columns in fp16) and 4-bit NormalFloat; CUDA only
(bitsandbytes quantizes when the weights move to the GPU). The heads, embeddings and S3Gen stay
as they are; neither is lossless. Their CPU counterpart is cpu-int8-t3 (alias torch-int8-t3),
which is tested against the same memory claim. Evidence: quantized module count and the
linears' bytes before and after.
"""
from __future__ import annotations

import torch

from ..core.claims import Claim, less
from ..measure import weights
from .base import Variant

_MIB = 2**20
BNB_CLAIM = Claim("resident_memory", "claimed 29–64% less VRAM (bitsandbytes quantization)", *less(29, 64),
                  source="assessment #8")


class BitsAndBytes(Variant):
    requires = ("CUDA", "package bitsandbytes")
    claims = (BNB_CLAIM,)

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.conflicts = ("bnb-nf4",) if kind == "int8" else ("bnb-int8",)

    def _replacement(self, lin: torch.nn.Linear, device) -> torch.nn.Module:
        import bitsandbytes as bnb
        weight = lin.weight.data.cpu()
        bias = lin.bias is not None
        if self.kind == "int8":
            q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias, has_fp16_weights=False,
                                    threshold=6.0)
            q.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        else:
            q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=bias,
                                  compute_dtype=lin.weight.dtype if lin.weight.dtype != torch.float32
                                  else torch.bfloat16, quant_type="nf4")
            q.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
        if bias:
            q.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
        return q.to(device)  # bitsandbytes quantizes here, on the move to the GPU

    def apply(self, pipeline):
        tfmr = pipeline.model.t3.tfmr
        before = weights.linear_bytes(tfmr)
        count = 0
        for parent in list(tfmr.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, child_name, self._replacement(child, pipeline.device))
                    count += 1
        return {"modules_quantized": count, "linear_weight_mb_before": round(before / _MIB, 3),
                "linear_weight_mb_after": round(weights.linear_bytes(tfmr) / _MIB, 3)}

    def evidence(self, pipeline, state) -> dict:
        return {**state, "t3_linear_types": weights.linear_counts(pipeline.model.t3.tfmr)}

    def engaged(self, evidence):
        n = evidence.get("modules_quantized", 0)
        return n > 0, f"{n} linear layers quantized"


VARIANTS = [BitsAndBytes("bnb-int8", "int8"), BitsAndBytes("bnb-nf4", "nf4")]
