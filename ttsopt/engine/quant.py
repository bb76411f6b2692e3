"""Dynamic int8 linear layers (int8 weights, activations quantized per call): the one int8 path,
used by the cpu-int8 variants (and its alias torch-int8-t3). And group-wise int4 weights
(`Int4Linear`, the cpu-int4-t3 variant): half the bytes of int8 again.

T3's decode is a matrix-vector product per layer, bound by reading float32 weights from memory;
int8 weights are a quarter of the bytes and x86 CPUs with VNNI multiply them natively. Its
kernels (fbgemm, onednn) run on CPU only. The modules are `torch.ao`'s dynamic int8 linears, made
as `quantize_dynamic` makes them (deprecated in favour of torchao, still working in torch 2.11;
torchao is not a dependency here) but packed once (`_int8_linear`).

GPT-2 (Turbo's T3) keeps its projections in transformers' `Conv1D`, a linear layer with its
weight stored transposed, which `quantize_dynamic` does not know: each is first turned into the
`nn.Linear` it is (the same function, its weight a transposed view), then quantized like the rest.
Linears that read the same input can be quantized as one matrix (`JoinedLinear`), which a Llama
layer's q, k and v (and its gate and up) are: one product where there were three, and one copy of
their weights for upstream's forward and the step plan alike.
The flow estimator's feed-forward output layers are diffusers' `LoRACompatibleLinear`, an
nn.Linear subclass that `quantize_dynamic` (which matches exact types) would leave in float32:
without a LoRA layer each is the plain nn.Linear it wraps, so it becomes one, weights shared.
"""
from __future__ import annotations

import sys
import warnings

import torch
from torch import nn


def _lora_free(child: nn.Module) -> bool:
    """A diffusers LoRACompatibleLinear without a LoRA layer: an nn.Linear in all but its type."""
    lora = sys.modules.get("diffusers.models.lora")  # only loaded where such a module can exist
    return lora is not None and type(child) is lora.LoRACompatibleLinear and child.lora_layer is None


def _bare_linear(in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> nn.Linear:
    """An nn.Linear whose parameters the caller assigns: built on the meta device, so its random
    initialisation, a pass over every weight that would be thrown away, never runs."""
    return nn.Linear(in_features, out_features, bias=bias, device="meta", dtype=dtype)


def _plain_linear(child: nn.Linear) -> nn.Linear:
    linear = _bare_linear(child.in_features, child.out_features, child.bias is not None, child.weight.dtype)
    linear.weight, linear.bias = child.weight, child.bias
    return linear


def _from_conv1d(child) -> nn.Linear:
    """The nn.Linear a transformers Conv1D is: its weight the transposed view of the Conv1D's, its
    bias shared. No copy here: quantizing copies each view into rows in its own worker thread
    (`_int8_weight`), where copying them here would be one serial pass over every weight."""
    in_features, out_features = child.weight.shape
    linear = _bare_linear(in_features, out_features, child.bias is not None, child.weight.dtype)
    linear.weight = nn.Parameter(child.weight.detach().t(), requires_grad=child.weight.requires_grad)
    linear.bias = child.bias
    return linear


def as_linears(module: nn.Module) -> int:
    """Replace every transformers `Conv1D` and LoRA-free diffusers `LoRACompatibleLinear` under
    MODULE in place with the equivalent nn.Linear; returns how many were replaced."""
    from transformers.pytorch_utils import Conv1D
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if _lora_free(child):
                setattr(parent, name, _plain_linear(child))
                replaced += 1
            elif isinstance(child, Conv1D):
                setattr(parent, name, _from_conv1d(child))
                replaced += 1
    return replaced


def quantize_linears(module: nn.Module, joins=()) -> nn.Module:
    """Replace every nn.Linear (and GPT-2 `Conv1D`) under MODULE in place with its dynamic int8
    counterpart, with a scale per output channel.

    Per channel rather than quantize_dynamic's default single scale per matrix: a row's error then
    follows its own range, not the largest weight's, at the same speed (fbgemm dequantizes per
    column either way). It is also what lets linears that read the same input be joined into one
    matrix with the very same int8 weights and scales, so a joined product is exact.

    JOINS: (parent, names) pairs, each naming linears of PARENT that read the same input (a Llama
    layer's q, k and v; its gate and up), as `llama_step.joins` finds them. Each group is quantized
    as one matrix (`JoinedLinear`) and its linears become `JoinedPart`s of it: one product per
    input instead of one per linear, and the only copy of those weights, which the step plan reads
    as it is.
    """
    as_linears(module)
    groups = [[getattr(parent, name) for name in names] for parent, names in joins]
    grouped = {id(child) for group in groups for child in group}
    if len(grouped) != sum(map(len, groups)) or not all(_joinable(group) for group in groups):
        raise ValueError("only distinct bias-free nn.Linear layers of one input size and dtype can be joined")
    found = [(parent, name, child) for parent in list(module.modules())
             for name, child in list(parent.named_children())
             if type(child) is nn.Linear and id(child) not in grouped]  # exact, as quantize_dynamic
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        made = in_parallel(_int8_of, [child for _, _, child in found] + groups)
    for (parent, name, _), q in zip(found, made):
        setattr(parent, name, q)
    for (parent, names), whole in zip(joins, made[len(found):], strict=True):
        for index, name in enumerate(names):
            setattr(parent, name, JoinedPart(whole, index))
    return module


def _joinable(group: list) -> bool:
    return len(group) > 1 and all(
        type(m) is nn.Linear and m.bias is None and not _hooked(m) and m.in_features == group[0].in_features
        and m.weight.dtype == group[0].weight.dtype for m in group)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _int8_of(item):
    """`_int8_linear` of a linear, `_int8_joined` of a group of them."""
    return _int8_joined(item) if isinstance(item, list) else _int8_linear(item)


def in_parallel(fn, items: list) -> list:
    """FN over ITEMS, one item per thread of torch's intra-op count at a time, each on one torch
    thread: for work that is a serial loop in torch, as quantizing and packing a weight are, which
    a layer at a time would run on one core (the gain: `scripts/quantize-time.py`). Torch's own
    threads are set to one meanwhile, so that no worker starts a team of threads of its own."""
    from concurrent.futures import ThreadPoolExecutor
    threads = torch.get_num_threads()
    if threads == 1 or len(items) < 2:
        return [fn(item) for item in items]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(threads)


def _int8_weight(linear: nn.Linear) -> torch.Tensor:
    """LINEAR's weight quantized as `quantize_dynamic`'s per-channel qconfig quantizes it. A weight
    that is a transposed view (a GPT-2 `Conv1D`'s, `as_linears`) is copied into rows first, here in
    the worker thread: the observer and the quantizer each read a row-major matrix faster than the
    view, by more than the copy costs (`scripts/quantize-time.py --model turbo`)."""
    from torch.ao.nn.quantized.modules.utils import _quantize_weight
    from torch.ao.quantization import per_channel_dynamic_qconfig
    observer = per_channel_dynamic_qconfig.weight()
    with torch.no_grad():
        weight = linear.weight.detach().float().contiguous()  # no copy for a float32 row-major weight
        observer(weight)
        return _quantize_weight(weight, observer)


def _packed_once(weight: torch.Tensor, bias: torch.Tensor | None, in_features: int) -> nn.Module:
    """A dynamic int8 linear holding WEIGHT and BIAS, packed once (see `_int8_linear`)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    q = DynamicLinear(1, 1, bias_=False, dtype=torch.qint8)  # packs an empty 1 x 1 weight
    q.in_features, q.out_features = in_features, weight.size(0)
    q.set_weight_bias(weight, bias)
    return q


def _int8_joined(group: list) -> JoinedLinear:
    """GROUP's linears as one `JoinedLinear`: each quantized on its own (so with its own rows'
    scales) and the int8 rows stacked, which is what `joined` packs; the step plan reads the packed
    matrix as it is."""
    weight = _stacked([(_int8_weight(m), None) for m in group])
    return JoinedLinear(_packed_once(weight, None, group[0].in_features), [m.out_features for m in group])


def _int8_linear(linear: nn.Linear) -> nn.Module:
    """What `quantize_dynamic` with the per-channel qconfig makes of LINEAR (`DynamicLinear.from_float`:
    the same observer, int8 weight, bias and version; its hooks carried over as its module swap
    carries them), packing the weight once where from_float packs twice: its constructor first
    packs an empty weight of the full size, which for T3's layers made about half of a load's
    packing time on a 2-core CPU."""
    q = _packed_once(_int8_weight(linear), linear.bias, linear.in_features)
    for hook in linear._forward_pre_hooks.values():
        q.register_forward_pre_hook(hook)
    for hook in linear._forward_hooks.values():
        q.register_forward_hook(hook)
    return q


def refuse_for_compile(module: nn.Module, instead: str) -> None:
    """One clear error where MODULE holds dynamic int8 linears, which torch.compile cannot trace
    (their packed weights are TorchScript objects); INSTEAD says what to run."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    if any(isinstance(m, DynamicLinear) for m in module.modules()):
        raise ValueError("torch.compile cannot trace dynamic int8 linears (their packed weights are TorchScript "
                         f"objects); {instead}")


def unpacked(m) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dynamic int8 linear M's (quantized weight, bias), read back out of its packed form, which
    copies the weight: a caller asks once. Only a plan over linears quantized apart asks (`joined`);
    the load's plan reads the matrices it quantized as one (`quantize_linears`' JOINS) as they are."""
    return m._packed_params._weight_bias()


def per_channel(w: torch.Tensor) -> bool:
    """Whether the quantized weight W (from `unpacked`) is qint8 with a scale per output channel."""
    return w.dtype == torch.qint8 and w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)


def joined(ws) -> torch.ScriptObject:
    """One packed int8 matrix holding the rows of several dynamic int8 linears over the same input,
    given as their `unpacked` (weight, bias) in order (per-channel, no bias): their int8 weights,
    scales and zero points as they are, so each output column is computed exactly as its own layer
    computes it."""
    return torch.ops.quantized.linear_prepack(_stacked(ws), None)


def _stacked(ws) -> torch.Tensor:
    """The rows of the per-channel int8 weights WS ((weight, bias) pairs, no bias) as one weight."""
    if any(b is not None for _, b in ws) or not all(per_channel(w) for w, _ in ws):
        raise ValueError("only per-channel int8 linears without bias can be joined exactly")
    return torch._make_per_channel_quantized_tensor(
        torch.cat([w.int_repr() for w, _ in ws]), torch.cat([w.q_per_channel_scales() for w, _ in ws]),
        torch.cat([w.q_per_channel_zero_points() for w, _ in ws]), 0)


class JoinedLinear(nn.Module):
    """Linears that read the same input, as one dynamic int8 matrix (`quantize_linears`' JOINS):
    their `JoinedPart`s are what the model calls. The first part called with an input runs the one
    product and keeps it until every part has been handed its columns, so a caller that asks for
    q, k and v of one input pays one product; a part asked again, or for another input, runs a new
    one. Each column is its own layer's exact result (`joined`)."""

    def __init__(self, linear: nn.Module, sizes: list[int]):
        super().__init__()
        self.linear, self.sizes = linear, tuple(sizes)
        self._kept = None  # (input, its version, the parts, indices not yet handed out)

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        kept = self._kept
        if kept is None or kept[0] is not x or kept[1] != _version(x) or index not in kept[3]:
            kept = (x, _version(x), self.linear(x).split(self.sizes, dim=-1), set(range(len(self.sizes))))
        kept[3].discard(index)
        self._kept = kept if kept[3] else None  # nothing is held once every part has its columns
        return kept[2][index]


def _version(x: torch.Tensor) -> int | None:
    """X's version counter (bumped by each in-place change); inference tensors keep none."""
    return None if x.is_inference() else x._version


class JoinedPart(nn.Module):
    """One linear of a `JoinedLinear`: its columns of the joined product."""

    def __init__(self, joined: JoinedLinear, index: int):
        super().__init__()
        self.joined, self.index = joined, index
        self.in_features, self.out_features = joined.linear.in_features, joined.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.joined.part(x, self.index)


class Int8Head(nn.Module):
    """A T3 speech head as a dynamic int8 linear (per channel) that still answers `.weight.device`:
    upstream's `T3.device` is `speech_head.weight.device`, read once per utterance (and by T3's
    prefill). The int8 weight itself is `linear.weight()`, which unpacks a copy of the whole matrix
    on each call: `weight` answers with an empty tensor on the head's device instead, which is all
    that reading asks of it."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        holder = nn.Sequential(linear)
        quantize_linears(holder)
        self.linear = holder[0]
        self.register_buffer("where", torch.empty(0, device=linear.weight.device), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """An empty tensor on the head's device (see the class): not the weights."""
        return self.where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


# --- int4 ------------------------------------------------------------------------------------------
# Group-wise asymmetric int4 weights: per group of GROUP input features a scale and a minimum, the
# weights two to a byte. Two kernels multiply them. Where the native ops build with AVX-512 VNNI or
# AVX2 (`int4_here`), ttsopt's own (`t3/native/int4_linear.cpp`): float32 inputs quantized to u8 per
# row, the weights unpacked in registers, so the product streams the packed bytes near the memory's
# speed. Elsewhere torch's own CPU kernel (`_weight_int4pack_mm_for_cpu`, the one gpt-fast and torchao's
# CPU int4 path call), which multiplies bfloat16 inputs (with float32 ones it was several times
# slower than a float32 linear on the EPYC box, in a microbenchmark), so a layer casts its input to
# bfloat16 and its output back. Both take the same int4 values; `Int4Linear.kernel` says which runs.
INT4_GROUP = 64


def int4_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and \
        hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def int4_here() -> str | None:
    """Why this process cannot run the native int4 kernel (the native ops did not build, or built
    without vector units: neither AVX-512 VNNI nor AVX2 with FMA and F16C, as the build's -march
    allows, which follows an ATEN_CPU_CAPABILITY cap), or None when it can."""
    from .t3 import native

    built = native.layer()
    if built.gpt2_int4 is None:
        return built.why
    if built.int4_isa not in INT4_FAST:
        return f"the native int4 kernel built as {built.int4_isa} here, without AVX-512 VNNI or AVX2 (torch's runs)"
    return None


# The native int4 kernels chosen over torch's: each read the packed weights faster than torch's
# kernel and made a faster T3 step than int8's where measured (README: the VNNI one on the AVX-512
# EPYC, the AVX2 one on that EPYC held to AVX2; no AVX2-only CPU has run it yet).
INT4_FAST = ("avx512-vnni", "avx2")


_ASK = object()  # int4_native's HERE when the caller has not asked `int4_here` already


def int4_native(out_features: int, in_features: int, group: int, here=_ASK) -> str | None:
    """Why a product of this shape cannot take the native int4 kernel here, or None when it can.
    HERE: `int4_here()`'s answer where the caller has it (one reading of the CPU for many layers)."""
    if out_features % 16 or group % 8 or in_features % group:
        return f"{out_features} x {in_features} in groups of {group} is not in blocks of 16 outputs"
    return int4_here() if here is _ASK else here


def int4_levels(weight: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """WEIGHT (N, K) as q in 0..15 (uint8, (N, K)) with a scale and a minimum per output and group
    ((N, K / group) each, float32, their half-precision values): weight ~ scale * q + minimum.
    A transposed weight (GPT-2's `Conv1D`) is copied into rows first: each pass below then reads
    its groups contiguously."""
    n, k = weight.shape
    w = weight.detach().float().contiguous().reshape(n, k // group, group)
    low, high = torch.aminmax(w, dim=2)
    scale = ((high - low) / 15).clamp_(min=1e-6).half().float()
    low = low.half().float()
    q = ((w - low[..., None]) / scale[..., None]).round_().clamp_(0, 15)
    return q.to(torch.uint8).reshape(n, k), scale, low


def pack_int4(q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    """`int4_levels`' output in the native kernel's layout (described in `int4_linear.cpp`)."""
    n, k = q.shape
    q5 = q.reshape(n // 16, 16, k // 8, 2, 4)  # blocks, outputs, eight inputs, halves, four inputs
    packed = (q5[:, :, :, 0] | (q5[:, :, :, 1] << 4)).permute(0, 2, 1, 3).reshape(n // 16, k // 8, 64)

    def blocked(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n // 16, 16, -1).permute(0, 2, 1).contiguous().half()
    sums = q.reshape(n, k // group, group).sum(dim=2, dtype=torch.int32).float()
    return {"packed": packed.contiguous(), "scales": blocked(scale), "mins": blocked(low),
            "csum": (scale * sums).sum(dim=1).contiguous()}


class Int4Linear(nn.Module):
    """nn.Linear with int4 weights in groups of `group` input features (bias kept in float), through
    the native kernel where `int4_native` allows, else torch's; `kernel` names the one chosen."""

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP, here=_ASK):
        """HERE: `int4_here()`'s answer where the caller has it (`quantize_int4`, for every layer)."""
        super().__init__()
        out_features, in_features = linear.weight.shape
        if in_features % group:
            raise ValueError(f"int4 groups of {group} do not divide {in_features} input features")
        self.in_features, self.out_features, self.group = in_features, out_features, group
        q, scale, low = int4_levels(linear.weight, group)
        self.why_not_native = int4_native(out_features, in_features, group, here)
        self.kernel = "torch" if self.why_not_native else "native"
        if self.kernel == "torch" and not int4_available():
            raise RuntimeError(f"int4 layer {out_features} x {in_features}: ttsopt's native kernel cannot take it "
                               f"({self.why_not_native}) and this torch has no CPU int4 weight kernel")
        if self.kernel == "native":
            for name, t in pack_int4(q, scale, low, group).items():
                self.register_buffer(name, t)
        else:
            zero = low + scale * 8  # torch's kernel dequantizes (q - 8) * scale + zero
            scales_zeros = torch.stack([scale, zero], dim=2)
            self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
            self.register_buffer("scales_zeros", scales_zeros.transpose(0, 1).contiguous().to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(),
                                                                   requires_grad=False)
        self.joined, self.join_index = None, None  # set by `join_int4`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "native":
            y = torch.ops.ttsopt_t3.int4_linear(x.float(), self.packed, self.scales, self.mins, self.csum, self.bias,
                                                self.group)
            return y.to(x.dtype)
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group, self.scales_zeros)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def native_parts(self) -> list[torch.Tensor]:
        """The native block op's five tensors for this projection (an empty bias: none)."""
        bias = self.bias if self.bias is not None else torch.empty(0)
        return [self.packed, self.scales, self.mins, self.csum, bias]

    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers())


def quantize_int4(module: nn.Module, group: int = INT4_GROUP, joins=()) -> int:
    """Replace every nn.Linear (and GPT-2 `Conv1D`) under MODULE in place with an `Int4Linear`;
    returns how many were replaced. JOINS: (parent, names) groups of linears that read the same
    input, as `llama_step.joins` finds them before quantizing; each group's native weights are
    then held as one matrix (`join_int4`)."""
    as_linears(module)
    found = [(parent, name, child) for parent in list(module.modules())
             for name, child in list(parent.named_children()) if type(child) is nn.Linear]
    here = int4_here()  # the CPU read and the native ops loaded (or built) once, before the worker threads
    made = in_parallel(lambda child: Int4Linear(child, group, here), [child for _, _, child in found])
    for (parent, name, _), layer in zip(found, made):
        setattr(parent, name, layer)
    for parent, names in joins:
        join_int4([getattr(parent, name) for name in names])
    return len(found)


INT4_PARTS = ("packed", "scales", "mins", "csum")


def join_int4(layers: list) -> list[torch.Tensor] | None:
    """LAYERS (native `Int4Linear`s of one input size and group, without bias) held as one matrix:
    their packed weights, scales, minimums and corrections concatenated over the outputs, each
    layer's own buffers views of its rows (each output is quantized on its own, so a block of
    outputs is the same bytes in either). One product then serves all of them (the native layer's),
    and each layer still computes alone; no weight is held twice. Sets each layer's `joined` to
    the native op's five tensors for the whole and `join_index` to its place; returns them, or
    None (nothing changed) where LAYERS cannot be joined."""
    first = layers[0]
    if not all(type(m) is Int4Linear and m.kernel == "native" and m.bias is None and m.group == first.group
               and m.in_features == first.in_features for m in layers):
        return None
    whole = {name: torch.cat([getattr(m, name) for m in layers]) for name in INT4_PARTS}
    start = 0
    for m in layers:
        for name in INT4_PARTS:
            rows = m.out_features if name == "csum" else m.out_features // 16
            setattr(m, name, whole[name].narrow(0, start if name == "csum" else start // 16, rows))
        start += m.out_features
    joined = [whole[name] for name in INT4_PARTS] + [torch.empty(0)]
    for index, m in enumerate(layers):
        m.joined, m.join_index = joined, index
    return joined
