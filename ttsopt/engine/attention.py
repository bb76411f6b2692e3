"""The flow estimator's attention as three batched products (scores, softmax, values) instead of
torch's fused CPU attention kernel, in bfloat16 on a CPU with bfloat16 units but no AMX.

Why: the estimator's transformer blocks attend over every frame of the utterance with the voice's
prompt in front (a few hundred frames, 8 heads of 64). On a CPU with avx512_bf16 but no AMX tiles,
torch's fused kernel (`_scaled_dot_product_flash_attention_for_cpu`) steps through small blocks
and multiplies far below the rate oneDNN's batched products reach on the same operands (the
README gives the profile and the measurements). The three products hold the scores in memory
(frames x frames per head, growing with the square of the utterance), which the fused kernel
avoids, so it keeps CPUs without bfloat16 units (in float32 the fused kernel is the faster) and
CPUs with AMX (whose fused kernel multiplies on the tiles; not measured here). An estimator that
holds float32 (int8 linear layers return float32) still attends in bfloat16 on such a CPU: the
products cast its queries, keys and values and cast the result back (`ProductAttention(dtype=)`),
so the rest of the estimator keeps its float32 stream. `scripts/flow-steps.py` measures either
choice (`SPEC@fused`). A long utterance's queries go through in blocks, so the scores one call
holds stay under `SCORES_BYTES` however many frames there are. Where the fused kernel stays on a
CPU, `FusedAttention` calls it without the estimator's mask when that mask adds nothing (an
utterance with no padded frames), the same output for one read less a call.

Numerically: the scores are rounded to bfloat16 before the softmax, where the fused kernel keeps
them in float32; the mel's error against the float32 flow is what the bench's fidelity rows show.
"""
from __future__ import annotations

import torch
from torch import nn

from ..measure.env import bf16_units

PRODUCTS = "products"   # scores, softmax and values as three batched products, in the estimator's dtype
BF16_PRODUCTS = "bfloat16 products"  # the same in bfloat16 within a float32 estimator
FUSED = "fused"         # torch's scaled_dot_product_attention, as upstream calls it
SCORES_BYTES = 64 * 2**20  # the most one block of queries' scores holds (its probabilities as much again)


def flow_attention(device_type: str, flags: set[str], precision: str) -> tuple[str, str]:
    """Which attention a flow estimator in PRECISION (`variants.fast.flow_precision`'s) takes on a
    device with CPU FLAGS, and why."""
    if device_type != "cpu":
        return FUSED, f"{device_type}: torch's fused attention kernels"
    if "amx_bf16" in flags:
        return FUSED, "this CPU has AMX tiles, which torch's fused CPU attention multiplies on"
    if not bf16_units(flags):
        return FUSED, "attention in float32: torch's fused CPU attention is the faster there"
    why = ("this CPU has bfloat16 units without AMX: torch's fused CPU attention multiplies far below the rate of "
           "three batched products")
    if precision == "bfloat16":
        return PRODUCTS, f"a bfloat16 estimator; {why}"
    return BF16_PRODUCTS, f"a float32 estimator's attention in bfloat16 (its queries, keys and values cast); {why}"


class ProductAttention:
    """A diffusers attention processor: attention of a sequence (B, L, D) over itself or a context
    (B, S, D') as softmax(Q K^T * scale + bias) V in three batched products over B x heads.
    `use_products` installs it only on modules it computes as upstream's processor does (no group
    or spatial norm, no residual, no output rescale), which the estimator's all are. Queries go in
    blocks whose scores hold at most SCORES_BYTES (each query's row is computed alone either way).
    DTYPE: the products' dtype where it is not the projections' (Q, K and V cast to it, the result
    cast back before the output projection); None: theirs."""

    def __init__(self, scores_bytes: int = SCORES_BYTES, dtype: torch.dtype | None = None):
        self.scores_bytes, self.dtype = scores_bytes, dtype

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        B, L, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        d, held = q.size(-1) // attn.heads, q.dtype
        q, k, v = (_heads(x, attn.heads, d).to(self.dtype or held) for x in (q, k, v))
        bias = _bias(attn, attention_mask, context.size(1), B, q.dtype)
        rows = max(1, self.scores_bytes // (q.size(0) * k.size(1) * q.element_size()))
        kt = k.transpose(1, 2)
        blocks = [_attend(q[:, i:i + rows], kt, v, _rows(bias, i, rows), d ** -0.5) for i in range(0, L, rows)]
        out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        out = out.view(B, attn.heads, L, d).transpose(1, 2).reshape(B, L, attn.heads * d).to(held)
        return attn.to_out[1](attn.to_out[0](out))


def _attend(q: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float):
    """softmax(Q K^T * scale + bias) V for a block of queries. The scale is applied in the
    product's own accumulation (alpha), scaled_dot_product_attention's default, which upstream's
    processor takes; without a bias to add (beta=0) the product neither reads one nor first
    copies it into every head's scores."""
    scores = torch.baddbmm(bias if bias is not None else q.new_empty(()), q, kt, beta=0 if bias is None else 1,
                           alpha=scale)
    return torch.bmm(torch.softmax(scores, dim=-1), v)


def _rows(bias: torch.Tensor | None, start: int, n: int) -> torch.Tensor | None:
    """The bias of queries [start, start + n): a per-query bias by its rows, a shared one whole."""
    return bias if bias is None or bias.size(1) == 1 else bias[:, start:start + n]


class FusedAttention:
    """Upstream's processor (torch's fused attention), handed no mask where the mask adds nothing:
    the estimator passes a bias of zeros for an utterance with no padded frames (every call on a
    CPU, where the flow is not padded to buckets), which the fused kernel would otherwise read and
    add to every head's scores. The output is the same bit for bit (adding zeros changes no score;
    tests). fast-s3gen gives it to a CPU's fused attention; on CUDA upstream's processor stays, as
    looking at the mask there would read it back to the host inside the captured graphs. Under
    torch.compile it passes the mask on untouched. `dropped` and `kept` count the masks it saw."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0
        self.inner = AttnProcessor2_0()
        self.dropped = self.kept = 0

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        if attention_mask is not None and not torch.compiler.is_compiling():
            if _adds_nothing(attention_mask):
                attention_mask = None
                self.dropped += 1
            else:
                self.kept += 1
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def _adds_nothing(mask: torch.Tensor) -> bool:
    """A boolean mask keeping every position, or an additive one of zeros."""
    return bool(mask.all()) if mask.dtype == torch.bool else not bool(mask.any())


def _bias(attn, mask: torch.Tensor | None, length: int, batch: int, dtype: torch.dtype) -> torch.Tensor | None:
    """MASK as an additive bias, (B * heads, 1 or L, S), or None where it adds nothing (no mask,
    or a bias of zeros: an utterance with no padded frames): a boolean mask keeps where it is true."""
    if mask is None or _adds_nothing(mask):
        return None
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    return attn.prepare_attention_mask(mask, length, batch).to(dtype)


def _heads(x: torch.Tensor, heads: int, d: int) -> torch.Tensor:
    """(B, L, heads * d) -> (B * heads, L, d), contiguous for the batched products."""
    B, L, _ = x.shape
    return x.view(B, L, heads, d).transpose(1, 2).reshape(B * heads, L, d)


def _plain(attn) -> bool:
    """A module this processor computes as upstream's does: nothing around the three products."""
    return (attn.spatial_norm is None and attn.group_norm is None and not attn.residual_connection
            and attn.rescale_output_factor == 1.0 and getattr(attn, "norm_q", None) is None
            and getattr(attn, "norm_k", None) is None)


def use_products(module: nn.Module, scores_bytes: int = SCORES_BYTES,
                 dtype: torch.dtype | None = None) -> tuple[int, int]:
    """Give every plain diffusers attention in MODULE the product processor, its blocks of queries
    holding at most SCORES_BYTES of scores, its products in DTYPE (None: the module's); (given, left
    as they were): a module of another form keeps its processor, and the count says so."""
    from diffusers.models.attention_processor import Attention
    given = left = 0
    for m in module.modules():
        if isinstance(m, Attention):
            if _plain(m):
                m.set_processor(ProductAttention(scores_bytes, dtype))
                given += 1
            else:
                left += 1
    return given, left


def masks(module: nn.Module) -> dict[str, int]:
    """How many masks MODULE's `FusedAttention` processors dropped (they added nothing) and kept."""
    from diffusers.models.attention_processor import Attention
    seen = [m.processor for m in module.modules()
            if isinstance(m, Attention) and isinstance(m.processor, FusedAttention)]
    return {"dropped": sum(p.dropped for p in seen), "kept": sum(p.kept for p in seen)}


def use_fused(module: nn.Module, unmasked: bool = False) -> int:
    """Give every diffusers attention in MODULE torch's fused attention: upstream's processor (for
    measuring another choice against it), or with UNMASKED `FusedAttention` (no mask where the mask
    adds nothing); how many."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    mods = [m for m in module.modules() if isinstance(m, Attention)]
    for m in mods:
        m.set_processor(FusedAttention() if unmasked else AttnProcessor2_0())
    return len(mods)


def processors(module: nn.Module) -> dict[str, int]:
    """How many attention modules in MODULE run each processor (evidence that a choice engaged)."""
    from diffusers.models.attention_processor import Attention
    counts: dict[str, int] = {}
    for m in module.modules():
        if isinstance(m, Attention):
            name = type(m.processor).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts
