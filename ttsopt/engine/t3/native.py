"""The native decode layer (`native/llama_layer.cpp`): T3's int8 Llama layer for one new token as
one C++ op, `torch.ops.ttsopt_t3.llama_layer_int8`, Turbo's GPT-2 block likewise (`gpt2_block_int8`),
both over `quant.Int4Linear`'s int4 weights as well (`llama_layer_int4`, `gpt2_block_int4`), the
attention of one new token over the cache they run, `torch.ops.ttsopt_t3.decode_attention`, and
the int4 product (`native/int4_linear.cpp`, `torch.ops.ttsopt_t3.int4_linear`).

Why: on a 2-core CPU the TorchScript layer's sixty-odd small ops cost a sizeable share of an int8
decode step beside its products and attention (`ttsopt bench` prints where the step went), and
torch's fused attention kernel, built for many queries, reads the cache well below the memory's
speed for one. The op keeps the int8 products and ATen's SiLU (or GELU); its norms and rotary
embedding with the cache write are plain loops, and its attention one pass over the keys and one
over the values. It computes what the TorchScript layer computes, in float32, its sums in another order
(tests bound the difference). It is built with torch's extension builder (ninja and a
C++ compiler) on first use, for this CPU's instruction set, and cached by it across processes;
where it cannot be built, `layer` says why and the step stays TorchScript (fast-t3's evidence and
`ttsopt bench` show which ran). `TTSOPT_NATIVE=0` keeps the TorchScript layer, to time one
against the other.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
from pathlib import Path

import torch

SOURCES = [Path(__file__).with_name("native") / name for name in ("llama_layer.cpp", "int4_linear.cpp")]
# Under an ATEN_CPU_CAPABILITY cap (`scripts/as-avx2.sh`) the build takes the x86-64 level the cap
# allows, so the native loops and the int4 kernel are the ones an AVX2 CPU would build, as torch's are.
_CAPPED_MARCH = {"avx2": "x86-64-v3", "avx": "x86-64-v2", "default": "x86-64-v2"}


def cflags() -> list[str]:
    """-march=native (or the cap's level, tuned for this CPU): the loops vectorize for this CPU, so
    the build is named after its units and flags (a cache shared by machines of other kinds never
    hands one of them another's build); -fopenmp: the attention's rows and heads run on torch's
    threads (at::parallel_for compiles to OpenMP)."""
    from ...measure.env import isa_cap

    capped = _CAPPED_MARCH.get(isa_cap() or "")
    return ["-O3", f"-march={capped or 'native'}", *(["-mtune=native"] if capped else []), "-fopenmp"]


def _name() -> str:
    """The extension's name, after this CPU's instruction set extensions (all /proc lists, whatever
    a cap holds torch to) and the build's flags (torch's builder itself rebuilds an extension whose
    source or flags changed)."""
    from ...measure.env import proc_flags

    flags = " ".join(sorted(proc_flags())) or platform.processor()
    digest = hashlib.sha1((flags + " ".join(cflags())).encode()).hexdigest()[:10]
    return f"ttsopt_t3_native_{digest}"


class Native:
    """The loaded ops (OP and OP_INT4: the Llama layer over int8 and over int4 weights, GPT2 and
    GPT2_INT4: Turbo's block likewise; the int4 product itself is `torch.ops.ttsopt_t3.int4_linear`,
    INT4_ISA the kernel it was built with: "avx512-vnni", "avx2" or "scalar"), or why there are none; BUILD_S:
    seconds this process spent loading them (a build when the extension cache had none for this
    source, else a check of it)."""

    def __init__(self):
        self.op, self.gpt2, self.why, self.build_s = None, None, "", 0.0
        self.op_int4, self.gpt2_int4, self.int4_isa = None, None, None
        if os.environ.get("TTSOPT_NATIVE", "1") == "0":
            self.why = "TTSOPT_NATIVE=0 keeps the TorchScript layer"
            return
        start = time.perf_counter()
        try:
            self._build()
            # Called from TorchScript: no Python-side cost per packed weight.
            self.op, self.gpt2 = torch.jit.script(_call), torch.jit.script(_call_gpt2)
            self.op_int4, self.gpt2_int4 = torch.jit.script(_call_int4), torch.jit.script(_call_gpt2_int4)
            self.int4_isa = torch.ops.ttsopt_t3.int4_isa()
        except Exception as e:  # the builder raises what the compiler, ninja or the loader raised
            self.why = f"the native layer did not build ({type(e).__name__}: {_reason(e)})"
        self.build_s = time.perf_counter() - start

    @staticmethod
    def _build() -> None:
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "No CUDA runtime is found": a CPU build needs none
        try:
            from torch.utils.cpp_extension import load
            load(name=_name(), sources=[str(p) for p in SOURCES], extra_cflags=cflags(), is_python_module=False,
                 verbose=False)
        finally:
            quiet.setLevel(level)


def _reason(e: Exception) -> str:
    """The line of a failed build's message that says what failed: the compiler's first error where
    the message carries the build's output (torch's builder appends it to "Error building
    extension"), else its last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return (errors[0] if errors else lines[-1] if lines else "no message")[:200]


_NATIVE: Native | None = None


def layer() -> Native:
    """The native layer of this process, built or loaded on first use."""
    global _NATIVE
    if _NATIVE is None:
        _NATIVE = Native()
    return _NATIVE


def evidence(plan) -> dict:
    """For a step's evidence: the seconds this process spent loading the native op PLAN runs, or why
    PLAN (a `llama_step` or `gpt2_step` plan) runs none though it could have; nothing otherwise."""
    if plan.native is not None or plan.native_int4 is not None:
        return {"native_build_s": round(layer().build_s, 2)}
    return {"native_layer": plan.native_why} if plan.native_why else {}


_P = torch.classes.quantized.LinearPackedParamsBase


def _call(h: torch.Tensor, norm1: torch.Tensor, eps1: float, norm2: torch.Tensor, eps2: float, qkv: _P, o: _P,
          gate_up: _P, down: _P, reduce_range: bool, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
          v_cache: torch.Tensor, start: int, scale: float, head_dim: int) -> torch.Tensor:
    return torch.ops.ttsopt_t3.llama_layer_int8(h, norm1, eps1, norm2, eps2, qkv, o, gate_up, down, reduce_range,
                                                cos, sin, k_cache, v_cache, start, scale, head_dim)


def _call_gpt2(h: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor, ln2_w: torch.Tensor, ln2_b: torch.Tensor,
               eps1: float, eps2: float, c_attn: _P, c_proj: _P, c_fc: _P, mlp_proj: _P, reduce_range: bool,
               k_cache: torch.Tensor, v_cache: torch.Tensor, start: int, scale: float, head_dim: int) -> torch.Tensor:
    return torch.ops.ttsopt_t3.gpt2_block_int8(h, ln1_w, ln1_b, ln2_w, ln2_b, eps1, eps2, c_attn, c_proj, c_fc,
                                               mlp_proj, reduce_range, k_cache, v_cache, start, scale, head_dim)


def _call_int4(h: torch.Tensor, norm1: torch.Tensor, eps1: float, norm2: torch.Tensor, eps2: float,
               qkv: list[torch.Tensor], o: list[torch.Tensor], gate_up: list[torch.Tensor], down: list[torch.Tensor],
               group: int, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
               start: int, scale: float, head_dim: int) -> torch.Tensor:
    return torch.ops.ttsopt_t3.llama_layer_int4(h, norm1, eps1, norm2, eps2, qkv, o, gate_up, down, group, cos, sin,
                                                k_cache, v_cache, start, scale, head_dim)


def _call_gpt2_int4(h: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor, ln2_w: torch.Tensor,
                    ln2_b: torch.Tensor, eps1: float, eps2: float, c_attn: list[torch.Tensor],
                    c_proj: list[torch.Tensor], c_fc: list[torch.Tensor], mlp_proj: list[torch.Tensor], group: int,
                    k_cache: torch.Tensor,
                    v_cache: torch.Tensor, start: int, scale: float, head_dim: int) -> torch.Tensor:
    return torch.ops.ttsopt_t3.gpt2_block_int4(h, ln1_w, ln1_b, ln2_w, ln2_b, eps1, eps2, c_attn, c_proj, c_fc,
                                               mlp_proj, group, k_cache, v_cache, start, scale, head_dim)
