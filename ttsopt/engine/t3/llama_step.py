"""A minimal Llama forward over a static KV cache, built from T3's own LlamaModel modules.

Each decoder layer's q/k/v/o projections, rotary embedding, RMSNorms and MLP compute what
the modules compute, op for op (so cast or quantized weights just work); only the cache and
the attention call are ours. No attention maps and no per-layer hidden states are returned:
upstream asks for both at every step and throws them away.

A decode step is 30 layers of small ops on two rows, so Python costs show: `Module.__call__`
(hook dispatch) around each of the fifteen or so modules per layer is a measurable share of an
int8 CPU step. `Plan` resolves every layer's weights once and calls the ops directly: float linears as
`F.linear` on the module's own weight, dynamic int8 linears as the quantized op on their own
packed weights (exactly what each module's forward runs), RMSNorm as its five ops. A module
that carries hooks, or that is neither kind (bitsandbytes, say), is still called as a module.
On CPU, when every layer is plain (all-float or all-int8 linears, no hooks), each layer runs
as one TorchScript function instead (`scripted`): the same ops from C++. With joined int8 weights
(below) a step of one new token runs each layer as one native op where it builds (`native`):
the TorchScript layer's arithmetic, its sums in another order, with a fraction of its ops and
an attention that reads the cache at nearer the memory's speed. With per-channel int8
weights (`quant.quantize_linears`) q, k and v are read as one matrix and gate and up as another
(`quant.joined`: the same int8 rows and scales, so the same results): four int8 products per
layer instead of seven, each paying its activation quantization and thread start once. Quantized
with `joins` those matrices are the layer's own (`quant.JoinedLinear`) and the plan reads them as
they are; quantized apart, the plan packs joined copies of them. A plan
can also run every layer through a function given to it (`compiled`: `torch.compile`'s).
`Plan.kind` says which path runs; fast-t3's evidence reports it, and `ttsopt bench` what the
step costs.

Two ways to address the cache:
- `start` an int: the new tokens go to slots [start, start + T) and attention reads exactly
  the filled slots — the same tensors, in the same order, as upstream's growing cache.
- `start` a (B,) tensor of per-row slots (T == 1): a scatter writes each row's token and a
  mask hides the unfilled tail, so every step has the same shapes (CUDA graphs, batches of
  prompts with different lengths).
"""
from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

from .. import quant
from . import native


class StaticKV:
    """Preallocated keys and values, (layers, batch, kv_heads, capacity, head_dim) each."""

    def __init__(self, config, batch: int, capacity: int, dtype, device, zeroed: bool = True):
        # Masked attention reads every slot, so unfilled ones must hold zeros (0 x garbage can
        # be NaN); sliced attention reads filled slots only and can skip zeroing a cache sized
        # for the longest utterance, whose pages the OS then commits only as they are written.
        new = torch.zeros if zeroed else torch.empty
        shape = (config.num_hidden_layers, batch, config.num_key_value_heads, capacity, config.head_dim)
        self.k = new(shape, dtype=dtype, device=device)
        self.v = new(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.size(3)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def _reduce_range(m) -> bool:
    """The reduce_range a dynamic int8 Linear's own forward passes to the quantized op."""
    return not (m.version is None or m.version < 4)


def _linear(m: nn.Module):
    """A callable that computes m(x) without `Module.__call__`, or the module itself."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    if _has_hooks(m):
        return m
    if type(m) is nn.Linear:
        return lambda x: F.linear(x, m.weight, m.bias)
    if type(m) is DynamicLinear and m._packed_params.dtype == torch.qint8:
        reduce_range = _reduce_range(m)
        op = torch.ops.quantized.linear_dynamic
        return lambda x: op(x, m._packed_params._packed_params, reduce_range).to(x.dtype)
    return m


def _norm(m: nn.Module):
    if _has_hooks(m) or type(m) is not LlamaRMSNorm:
        return m

    def norm(x):  # LlamaRMSNorm.forward, op for op
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + m.variance_epsilon)
        return m.weight * x.to(dtype)
    return norm


def _act(m: nn.Module):
    from transformers.activations import SiLUActivation  # forward: F.silu(input)
    plain = type(m) in (nn.SiLU, SiLUActivation) and "forward" not in vars(m) and not getattr(m, "inplace", False)
    return F.silu if plain and not _has_hooks(m) else m


def scripted_module():
    """`scripted`, imported on first use (it scripts its functions at import, with a deprecation
    notice for each: torch.jit.script is in maintenance mode upstream)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning)
        from . import scripted
    return scripted


class Plan:
    """Per layer: (input norm, q, k, v, o, post-attention norm, gate, up, act, down, attn).
    Built from the modules as they are now; `current` tells whether it still matches them."""

    def __init__(self, tfmr, layer_fn=None):
        """LAYER_FN: a function of `layer_args`'s arguments to run every layer with (`compiled`
        passes `torch.compile`'s version of the float layer) instead of the TorchScript one."""
        self.tfmr = tfmr
        self.modules = self._modules(tfmr)
        self.layers = []
        for layer in tfmr.layers:
            a, mlp = layer.self_attn, layer.mlp
            self.layers.append((_norm(layer.input_layernorm), _linear(a.q_proj), _linear(a.k_proj),
                                _linear(a.v_proj), _linear(a.o_proj), _norm(layer.post_attention_layernorm),
                                _linear(mlp.gate_proj), _linear(mlp.up_proj), _act(mlp.act_fn),
                                _linear(mlp.down_proj), a))
        self.norm = _norm(tfmr.norm)
        self.scripted, self.kind = self._script(tfmr) if layer_fn is None else self._with(tfmr, layer_fn)
        self.native, self.native_why = None, ""  # one new token through `native`'s C++ layer
        self.native_int4 = None  # (op, per-layer arguments): the same over int4 weights
        if self.kind == "torchscript-int8-joined":
            built = native.layer()
            self.native, self.native_why = built.op, built.why
            if self.native is not None:
                self.kind = "native-int8-joined"
        elif self.kind == "int4-joined":  # no TorchScript int4 layer: more tokens at once run eager
            built = native.layer()
            self.native_why = built.why
            if built.op_int4 is not None:
                self.native_int4, self.kind = (built.op_int4, Plan.layer_args(tfmr)[1]), "native-int4-joined"

    @staticmethod
    def _with(tfmr, layer_fn):
        kind, layers = Plan.layer_args(tfmr)
        if kind != "float":
            raise ValueError(f"the layers are {kind or 'not plain Llama layers'}: a layer function of the float "
                             "layer's arguments cannot run them")
        return (layer_fn, layers), f"{getattr(layer_fn, 'kind', 'custom')}-float"

    @staticmethod
    def _script(tfmr):
        """A TorchScript layer (`scripted`) and its per-layer arguments when the layers are plain
        (`layer_args`) and on the CPU; else None."""
        if next(tfmr.parameters()).device.type != "cpu":
            return None, "eager"  # graphs (CUDA) remove the per-op cost; scripting is measured on CPU only
        kind, layers = Plan.layer_args(tfmr)
        if kind is None:
            return None, "eager"
        if kind == "int4-joined":
            return None, kind
        return (scripted_module().SCRIPTED[kind], layers), f"torchscript-{kind}"

    @staticmethod
    def layer_args(tfmr) -> tuple[str | None, list]:
        """(kind, per-layer arguments of `scripted`'s layer functions) when every layer is plain
        Llama with all-float, all-dynamic-int8 or all-per-channel-int8 ("int8-joined": joined here,
        or when quantized) linears and no hooks; for native int4 linears joined when quantized
        ("int4-joined"), the arguments of `native`'s int4 layer; (None, []) otherwise."""
        layers, kinds = [], set()
        for layer in tfmr.layers:
            a, mlp = layer.self_attn, layer.mlp
            lins = (a.q_proj, a.k_proj, a.v_proj, a.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
            norms = (layer.input_layernorm, layer.post_attention_layernorm)
            plain = (all(type(n) is LlamaRMSNorm for n in norms) and _act(mlp.act_fn) is F.silu
                     and a.num_key_value_groups == 1
                     and not any(_has_hooks(m) for m in (*lins, *norms)))  # the layer's own modules are never called
            if not plain:
                return None, []
            found = _layer_weights(lins)
            if found is None:
                return None, []
            kinds.add(found[0])
            weights = found[1]
            norm1, norm2 = norms
            layers.append((norm1.weight, norm1.variance_epsilon, norm2.weight, norm2.variance_epsilon, *weights))
        if len(kinds) != 1:
            return None, []
        kind = kinds.pop()
        if kind == "int8-joined":
            layers = _joined(layers)
        return kind, layers

    @staticmethod
    def _modules(tfmr) -> list:
        out = [tfmr.norm]
        for layer in tfmr.layers:
            a, mlp = layer.self_attn, layer.mlp
            out += [layer.input_layernorm, a, a.q_proj, a.k_proj, a.v_proj, a.o_proj,
                    layer.post_attention_layernorm, mlp.gate_proj, mlp.up_proj, mlp.act_fn, mlp.down_proj]
        return out

    def current(self) -> bool:
        """The same module objects as when built (a variant that swaps a module invalidates it).
        Hooks registered since are not seen: build plans after the variants are applied."""
        return all(a is b for a, b in zip(self.modules, self._modules(self.tfmr)))


def _layer_weights(lins) -> tuple[str, list] | None:
    """(kind, the weight arguments of `scripted`'s layer of that kind) for one layer's linears
    LINS (q, k, v, o, gate, up, down); None where no kind fits. Per-channel int8 weights quantized
    apart are returned as lists, to be joined by `_joined` once every layer is known to join."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    wholes = _prejoined(lins)
    if all(type(m) is nn.Linear and m.bias is None for m in lins):
        return "float", [m.weight for m in lins]
    if all(type(m) is quant.Int4Linear for m in lins):
        joined = _int4_joined(lins)
        return None if joined is None else ("int4-joined", joined)
    if wholes is not None:
        if any(_has_hooks(m) for w in wholes for m in (w, w.linear)):
            return None
        packed = (wholes[0].linear, lins[3], wholes[1].linear, lins[6])
        ranges = {_reduce_range(m) for m in packed}
        return None if len(ranges) != 1 else \
            ("int8-joined", [m._packed_params._packed_params for m in packed] + [ranges.pop()])
    if not all(type(m) is DynamicLinear and m._packed_params.dtype == torch.qint8 for m in lins):
        return None
    ranges = {_reduce_range(m) for m in lins}
    if len(ranges) != 1:
        return None
    ws = _per_channel_unbiased(lins)
    if ws is None:
        return "int8", [m._packed_params._packed_params for m in lins] + [ranges.pop()]
    return "int8-joined", [ws[:3], lins[3]._packed_params._packed_params,
                           ws[4:6], lins[6]._packed_params._packed_params, ranges.pop()]


def _int4_joined(lins) -> list | None:
    """The native int4 layer's weight arguments for one layer's int4 linears LINS when all run the
    native kernel in one group size, q, k and v are `quant.join_int4`'s parts of one matrix in
    order and gate and up of another; else None."""
    q, k, v, o, gate, up, down = lins
    if any(m.kernel != "native" for m in lins) or len({m.group for m in lins}) != 1:
        return None
    for group in ((q, k, v), (gate, up)):
        whole = group[0].joined
        if whole is None or [(m.joined is whole, m.join_index) for m in group] != \
                [(True, i) for i in range(len(group))] or whole[3].numel() != sum(m.out_features for m in group):
            return None
    return [q.joined, o.native_parts(), gate.joined, down.native_parts(), q.group]


def joins(tfmr) -> list[tuple[nn.Module, tuple[str, ...]]]:
    """The groups of TFMR's linears that read the same input, as `quant.quantize_linears` takes
    them: per Llama layer its q, k and v, and its gate and up, where each is a bias-free nn.Linear
    without hooks (none for other layers: GPT-2's q, k and v are one matrix already)."""
    out = []
    for layer in getattr(tfmr, "layers", ()):
        a, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        for parent, names in ((a, ("q_proj", "k_proj", "v_proj")), (mlp, ("gate_proj", "up_proj"))):
            lins = [getattr(parent, name, None) for name in names]
            if all(type(m) is nn.Linear and m.bias is None and not _has_hooks(m) for m in lins):
                out.append((parent, names))
    return out


def _prejoined(lins) -> tuple | None:
    """The two `quant.JoinedLinear`s of a layer's linears LINS when q, k and v are the parts of one
    and gate and up of the other, in order, and o and down dynamic int8 linears; else None."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    q, k, v, o, gate, up, down = lins
    wholes = []
    for group in ((q, k, v), (gate, up)):
        if not all(type(m) is quant.JoinedPart for m in group):
            return None
        whole = group[0].joined
        if [(m.joined, m.index) for m in group] != [(whole, i) for i in range(len(group))] or \
                len(whole.sizes) != len(group):
            return None
        wholes.append(whole)
    if not all(type(m) is DynamicLinear and m._packed_params.dtype == torch.qint8 for m in (o, down)):
        return None
    return tuple(wholes)


def _per_channel_unbiased(lins) -> list | None:
    """LINS' `quant.unpacked` weights when every one is per-channel int8 without bias, else None.
    Each is unpacked once, and none after the first that is not: an unpack copies the weight."""
    ws = []
    for m in lins:
        w, b = quant.unpacked(m)
        if b is not None or not quant.per_channel(w):
            return None
        ws.append((w, b))
    return ws


_JOINED = (4, 6)  # where a layer's arguments hold the q/k/v and the gate/up weights to join


def _joined(layers: list) -> list:
    """LAYERS with each group of weights at `_JOINED` packed as one matrix (`quant.joined`), the
    groups packed in parallel (`quant.in_parallel`): packing is a serial loop in torch, and T3 has
    60 such matrices."""
    todo = [args[i] for args in layers for i in _JOINED if isinstance(args[i], list)]  # else joined when quantized
    packed = iter(quant.in_parallel(quant.joined, todo))
    return [tuple(next(packed) if i in _JOINED and isinstance(arg, list) else arg for i, arg in enumerate(args))
            for args in layers]


_PLANS: weakref.WeakKeyDictionary[nn.Module, Plan] = weakref.WeakKeyDictionary()


def plan_for(tfmr) -> Plan:
    """The cached plan for TFMR, rebuilt when its modules changed."""
    plan = _PLANS.get(tfmr)
    if plan is None or not plan.current():
        plan = _PLANS[tfmr] = Plan(tfmr)
    return plan


def forward(tfmr, h: torch.Tensor, cache: StaticKV, start, plan: Plan | None = None,
            taps: dict[int, torch.Tensor | None] | None = None) -> torch.Tensor:
    """Run inputs_embeds H (B, T, D) through every layer and the final norm; returns (B, T, D).
    PLAN: `Plan(tfmr)` made once per utterance by the caller (default: `plan_for(tfmr)`).
    TAPS: layer index -> filled with that layer's input (B, T, D), for a reader of one layer's
    attention (`alignment.attention_rows`) on a path whose layers return none."""
    plan = plan or plan_for(tfmr)
    B, T, _ = h.shape
    limit = None
    if not isinstance(start, int) and h.device.type == "cpu" and bool((start == start[0]).all()):
        start = int(start[0])  # rows of one length: the int path (TorchScript's layers, no mask) computes the same
    if isinstance(start, int):
        positions = torch.arange(start, start + T, device=h.device).unsqueeze(0)
        mask = None
        if T > 1:  # token t sees the cache before `start` and new tokens up to itself
            mask = torch.arange(start + T, device=h.device)[None, :] <= positions.view(T, 1)
    else:
        positions = start.view(B, 1)
        limit = cache.capacity  # CUDA graphs need every step to read the same shapes
        if h.device.type == "cpu":  # nothing to keep static: read up to the longest row's new slot only
            limit = int(start.max()) + 1
        mask = (torch.arange(limit, device=h.device)[None, :] <= positions).view(B, 1, 1, -1)
    cos, sin = tfmr.rotary_emb(h, positions)
    step = plan.native_int4 or ((plan.native, plan.scripted[1]) if plan.native is not None and
                                plan.scripted is not None else None)
    if step is not None and isinstance(start, int) and T == 1:
        op, layers = step
        attn = tfmr.layers[0].self_attn
        cos, sin = cos.reshape(-1), sin.reshape(-1)
        for i, args in enumerate(layers):
            _tap(taps, i, h)
            h = op(h, *args, cos, sin, cache.k[i], cache.v[i], start, attn.scaling, attn.head_dim)
        return plan.norm(h)
    if plan.scripted is not None and isinstance(start, int):
        fn, layers = plan.scripted
        attn = tfmr.layers[0].self_attn
        for i, args in enumerate(layers):
            _tap(taps, i, h)
            h = fn(h, *args, cos, sin, cache.k[i], cache.v[i], start, mask, attn.scaling, attn.head_dim)
        return plan.norm(h)
    for i, (norm1, q_proj, k_proj, v_proj, o_proj, norm2, gate, up, act, down, attn) in enumerate(plan.layers):
        _tap(taps, i, h)
        h = h + _attention(attn, q_proj, k_proj, v_proj, o_proj, norm1(h), cos, sin,
                           cache.k[i], cache.v[i], start, mask, limit)
        x = norm2(h)
        h = h + down(act(gate(x)) * up(x))
    return plan.norm(h)


def _tap(taps: dict | None, i: int, h: torch.Tensor) -> None:
    if taps is not None and i in taps:
        taps[i] = h


def _attention(attn, q_proj, k_proj, v_proj, o_proj, x, cos, sin, k_cache, v_cache, start, mask, limit):
    B, T, _ = x.shape
    shape = (B, T, -1, attn.head_dim)
    q = q_proj(x).view(shape).transpose(1, 2)
    k = k_proj(x).view(shape).transpose(1, 2)
    v = v_proj(x).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    if isinstance(start, int):
        k_cache[:, :, start:start + T] = k
        v_cache[:, :, start:start + T] = v
        keys, values = k_cache[:, :, :start + T], v_cache[:, :, :start + T]
    else:
        index = start.view(B, 1, 1, 1).expand(B, k.size(1), 1, k.size(3))
        k_cache.scatter_(2, index, k)
        v_cache.scatter_(2, index, v)
        keys, values = k_cache[:, :, :limit], v_cache[:, :, :limit]
    keys, values = keys.to(q.dtype), values.to(q.dtype)  # a half cache (`half-kv`) read widened
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                         enable_gqa=attn.num_key_value_groups > 1)
    return o_proj(out.transpose(1, 2).reshape(B, T, -1))
