"""A minimal GPT-2 forward over a static KV cache, built from Turbo's own GPT2Model modules.

Each block computes what its modules compute, op for op: LayerNorm, the fused q/k/v projection,
scaled-dot-product attention as transformers' SDPA path calls it, the output projection and
the MLP with its own activation module. Projections are called without `Module.__call__`
where they are plain: transformers' `Conv1D` as the `addmm` its forward runs, `nn.Linear` (and
the dynamic int8 linears `cpu-int8-t3` makes of them) as in `llama_step`. Only the cache and
the attention call are ours: keys and values are written in place into preallocated tensors
instead of being concatenated onto a cache that is copied whole every step.

On CPU, when every block is plain (dynamic int8 projections, LayerNorms, the tanh GELU, no
hooks), each block runs as one TorchScript function instead (`scripted.gpt2_block_int8`): the same ops
from C++, without the interpreter's cost per op; and a step of one new token runs each block as
one native op where it builds (`native`, as `llama_step` does for the Llama layer): the same
arithmetic, its sums in another order, with an attention that reads the cache at nearer the
memory's speed. With int4 projections on the native kernel (`quant.Int4Linear`, cpu-int4-t3) a
step of one new token runs each block as the native int4 op (`native-int4`); there is no
TorchScript int4 block, so more tokens at once (the prefill) go through the modules. `Plan.kind`
says which path runs.

GPT-2 adds learned position embeddings to its inputs (`wpe`); Turbo feeds speech embeddings as
`inputs_embeds`, so a step's input is the speech embedding plus `wpe` at its position, as
GPT2Model forms it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import NewGELUActivation
from transformers.pytorch_utils import Conv1D

from . import llama_step, native
from .llama_step import _has_hooks
from .llama_step import _linear as _plain_linear


class StaticKV:
    """Preallocated keys and values, (layers, batch, heads, capacity, head_dim) each."""

    def __init__(self, config, batch: int, capacity: int, dtype, device):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch, config.n_head, capacity, head_dim)
        # Sliced attention reads filled slots only, so the cache need not be zeroed.
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.size(3)


def _projection(m: nn.Module):
    """m(x) without `Module.__call__`: Conv1D's own addmm, or what `llama_step` does for linears."""
    if type(m) is Conv1D and not _has_hooks(m):
        def conv1d(x):
            out = torch.addmm(m.bias, x.view(-1, x.size(-1)), m.weight)
            return out.view(*x.shape[:-1], m.nf)
        return conv1d
    return _plain_linear(m)


def _layer_norm(m: nn.Module):
    if type(m) is nn.LayerNorm and not _has_hooks(m):
        return lambda x: F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
    return m


def _kind(m: nn.Module) -> str:
    """What a projection is, for evidence: conv1d (GPT-2's own), linear, int8-dynamic, or its class."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from ..quant import Int4Linear
    kinds = {Conv1D: "conv1d", nn.Linear: "linear", DynamicLinear: "int8-dynamic"}
    if type(m) is Int4Linear:
        return f"int4-{m.kernel}"
    return kinds.get(type(m), f"{type(m).__module__}.{type(m).__name__}")


class Plan:
    """Per block: (ln_1, c_attn, c_proj, ln_2, c_fc, act, mlp c_proj, attention module), resolved once."""

    def __init__(self, tfmr):
        self.tfmr = tfmr
        self.modules = self._modules(tfmr)
        self.blocks = [(_layer_norm(b.ln_1), _projection(b.attn.c_attn), _projection(b.attn.c_proj),
                        _layer_norm(b.ln_2), _projection(b.mlp.c_fc), b.mlp.act, _projection(b.mlp.c_proj), b.attn)
                       for b in tfmr.h]
        self.ln_f = _layer_norm(tfmr.ln_f)
        self.kind = ",".join(sorted({_kind(m) for b in tfmr.h for m in (b.attn.c_attn, b.mlp.c_fc)}))
        self.scripted = self._script(tfmr)
        self.native, self.native_why = None, ""  # one new token through `native`'s C++ block
        self.native_int4 = self._int4(tfmr)
        if self.native_int4 is not None:
            self.kind = "native-int4"
        if self.scripted is not None:
            self.kind = "torchscript-int8"
            built = native.layer()
            self.native, self.native_why = built.gpt2, built.why
            if self.native is not None:
                self.kind = "native-int8"

    @staticmethod
    def _script(tfmr):
        """The TorchScript block (`scripted.gpt2_block_int8`) and its per-block arguments when every block is
        plain and its projections are dynamic int8 on the CPU; else None."""
        if next(tfmr.parameters()).device.type != "cpu":
            return None  # graphs (CUDA) remove the per-op cost; scripting is measured on CPU only
        blocks = block_args(tfmr)
        if blocks is None:
            return None
        return llama_step.scripted_module().GPT2_INT8, blocks

    @staticmethod
    def _int4(tfmr):
        """`native`'s int4 block and its per-block arguments when every block is plain and its
        projections are int4 on the native kernel; else None."""
        blocks = int4_block_args(tfmr)
        built = native.layer() if blocks is not None else None
        return None if built is None or built.gpt2_int4 is None else (built.gpt2_int4, blocks)

    @staticmethod
    def _modules(tfmr) -> list:
        out = [tfmr.ln_f, tfmr.wpe]
        for b in tfmr.h:
            out += [b.ln_1, b.attn.c_attn, b.attn.c_proj, b.ln_2, b.mlp.c_fc, b.mlp.act, b.mlp.c_proj]
        return out

    def current(self) -> bool:
        return all(a is b for a, b in zip(self.modules, self._modules(self.tfmr)))


def _plain_block(b) -> bool:
    """Whether block B is plain GPT-2 around its projections: LayerNorms with bias, the tanh GELU,
    standard attention, no hooks."""
    projections = (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)
    norms, act = (b.ln_1, b.ln_2), b.mlp.act
    return (all(type(n) is nn.LayerNorm and n.elementwise_affine and n.bias is not None for n in norms)
            and type(act) is NewGELUActivation and "forward" not in vars(act)
            and not b.attn.is_cross_attention and b.attn.split_size == b.attn.embed_dim
            and not any(_has_hooks(m) for m in (b, b.attn, b.mlp, act, *projections, *norms)))


def _norm_args(b) -> tuple:
    return b.ln_1.weight, b.ln_1.bias, b.ln_2.weight, b.ln_2.bias, b.ln_1.eps, b.ln_2.eps


def block_args(tfmr) -> list | None:
    """Per block, the arguments of `scripted.gpt2_block_int8` after the hidden state, when every
    block is plain (`_plain_block`) with all four projections dynamic int8 of one reduce_range;
    None otherwise."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    blocks = []
    for b in tfmr.h:
        projections = (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)
        int8 = all(type(m) is DynamicLinear and m._packed_params.dtype == torch.qint8 for m in projections)
        ranges = {llama_step._reduce_range(m) for m in projections} if int8 else set()
        if not (int8 and len(ranges) == 1 and _plain_block(b)):
            return None
        blocks.append((*_norm_args(b), *(m._packed_params._packed_params for m in projections), ranges.pop()))
    return blocks


def int4_block_args(tfmr) -> list | None:
    """Per block, the arguments of `native`'s int4 block after the hidden state, when every block is
    plain (`_plain_block`) with all four projections int4 on the native kernel of one group size, on
    the CPU; None otherwise."""
    from ..quant import Int4Linear

    blocks, groups = [], set()
    for b in tfmr.h:
        projections = (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)
        if not (all(type(m) is Int4Linear and m.kernel == "native" for m in projections) and _plain_block(b)):
            return None
        groups |= {m.group for m in projections}
        blocks.append((*_norm_args(b), *(m.native_parts() for m in projections)))
    if len(groups) != 1 or next(tfmr.parameters()).device.type != "cpu":
        return None
    group = groups.pop()
    return [(*args, group) for args in blocks]


def forward(tfmr, embeds: torch.Tensor, cache: StaticKV, start: int, plan: Plan) -> torch.Tensor:
    """EMBEDS (B, T, D) at positions [start, start + T) through every block and `ln_f`."""
    B, T, _ = embeds.shape
    positions = torch.arange(start, start + T, device=embeds.device).unsqueeze(0)
    h = embeds + tfmr.wpe(positions)
    mask = None
    if T > 1:  # token t sees the cache before `start` and the new tokens up to itself
        mask = torch.arange(start + T, device=h.device)[None, :] <= positions.view(T, 1)
    if plan.native_int4 is not None and T == 1:
        op, blocks = plan.native_int4
        for i, (args, block) in enumerate(zip(blocks, tfmr.h)):
            h = op(h, *args, cache.k[i], cache.v[i], start, block.attn.scaling, block.attn.head_dim)
        return plan.ln_f(h)
    if plan.native is not None and plan.scripted is not None and T == 1:
        _, blocks = plan.scripted
        for i, (args, block) in enumerate(zip(blocks, tfmr.h)):
            h = plan.native(h, *args, cache.k[i], cache.v[i], start, block.attn.scaling, block.attn.head_dim)
        return plan.ln_f(h)
    if plan.scripted is not None:
        fn, blocks = plan.scripted
        for i, (args, block) in enumerate(zip(blocks, tfmr.h)):
            h = fn(h, *args, cache.k[i], cache.v[i], start, mask, block.attn.scaling, block.attn.head_dim)
        return plan.ln_f(h)
    for i, (ln_1, c_attn, c_proj, ln_2, c_fc, act, mlp_proj, attn) in enumerate(plan.blocks):
        q, k, v = c_attn(ln_1(h)).split(attn.split_size, dim=2)
        shape = (B, T, -1, attn.head_dim)
        q, k, v = (x.view(shape).transpose(1, 2) for x in (q, k, v))
        cache.k[i, :, :, start:start + T] = k
        cache.v[i, :, :, start:start + T] = v
        keys, values = cache.k[i, :, :, :start + T].to(q.dtype), cache.v[i, :, :, :start + T].to(q.dtype)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling)
        h = h + c_proj(out.transpose(1, 2).reshape(B, T, -1))
        h = h + mlp_proj(act(c_fc(ln_2(h))))
    return plan.ln_f(h)
