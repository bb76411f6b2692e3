"""S3Gen's flow as a pipeline stage (`FlowStage`), which variants configure: fewer CFM steps
(cfm-steps-K), a reduced-precision estimator padded to length buckets and, on CUDA, replayed
from CUDA graphs captured per bucket (fast-s3gen), the estimator through `torch.compile`
(compiled-s3gen: `CompiledEstimator`).

Where the time goes (the baseline notebook's profiler pass shows it): the CFM estimator, run
10 Euler steps x a CFG batch of 2, is nearly all of the flow; the conformer encoder is the rest.

What is *not* cached, and why: upstream recomputes the reference prompt every call (the
prompt's tokens go through the encoder, its mel frames through every estimator step), but
neither pass can be cached exactly. The encoder attends over prompt and new tokens together
(full attention, no chunk mask), so the prompt's encodings depend on the new tokens; the
estimator sees fresh noise at the prompt frames on every call. What does depend only on the
voice — the reference tensors moved to the flow's device and dtype — upstream already keeps,
because `S3Token2Mel.forward` converts `ref_dict` in place on the first call.
"""
from __future__ import annotations

import contextlib
import io
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import quant
from .graphs import capture

UPSTREAM_CFM_STEPS = 10
UPSTREAM_MEANFLOW_STEPS = 2


class FlowStage:
    """The pipeline's flow stage: upstream's `flow_inference`, with N_TIMESTEPS CFM steps (None:
    upstream's own default). Counts its calls, so variants can show they ran."""

    def __init__(self, s3gen, n_timesteps: int | None = None):
        self.s3gen = s3gen
        self.n_timesteps = n_timesteps
        self.calls = 0

    def __call__(self, tokens: torch.Tensor, conds, finalize: bool = True) -> torch.Tensor:
        self.calls += 1
        if not self.s3gen.meanflow:
            return self.s3gen.flow_inference(tokens, ref_dict=conds.gen, finalize=finalize,
                                             n_cfm_timesteps=self.n_timesteps)
        # Turbo's mean-flow solver prints a line and a progress bar on every call: still done, as
        # upstream does, but into a buffer, so a stage table or a suite's progress stays readable.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return self.s3gen.flow_inference(tokens, ref_dict=conds.gen, finalize=finalize,
                                             n_cfm_timesteps=self.n_timesteps)

    @property
    def steps(self) -> int:
        """Steps a call takes: upstream's default is 2 for Turbo's mean-flow decoder, else 10."""
        return self.n_timesteps or (UPSTREAM_MEANFLOW_STEPS if self.s3gen.meanflow else UPSTREAM_CFM_STEPS)


class CastConvolution(nn.Module):
    """A Conv1d or ConvTranspose1d (causal padding and all: the module itself is kept) holding and
    computing DTYPE inside an estimator whose stream is another dtype: its input is cast in, its
    output cast back, so the layers around it see what they saw."""

    def __init__(self, conv: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.conv, self.dtype = conv.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.to(self.dtype)).to(x.dtype)


def cast_convolutions(estimator: nn.Module, dtype: torch.dtype) -> int:
    """ESTIMATOR's (upstream's ConditionalDecoder) convolutions in DTYPE (`CastConvolution`), in
    place; how many. Its `final_proj` stays as it is: upstream reads the estimator's dtype from that
    weight, and its Euler solver casts the flow's inputs to it, so the stream keeps its dtype."""
    n = 0
    for parent in list(estimator.modules()):
        for name, child in list(parent.named_children()):
            last = parent is estimator and name == "final_proj"
            if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)) and not last:
                setattr(parent, name, CastConvolution(child, dtype))
                n += 1
    return n


class BucketedEstimator(nn.Module):
    """Wraps the CFM estimator. On CUDA: pads the frame axis to a multiple of `bucket` (exact —
    the estimator's convolutions are causal and its attention masks padded frames) and replays
    one CUDA graph per (bucket, batch, dtype). Without graphs it calls the estimator as is."""

    def __init__(self, estimator: nn.Module, bucket: int = 64, graphs: bool = False):
        super().__init__()
        self.estimator = estimator
        self.bucket = bucket
        self.use_graphs = graphs
        self._graphs: dict[tuple, tuple] = {}
        self.replays = 0

    @property
    def dtype(self):  # read by upstream's solve_euler to cast its inputs
        return self.estimator.dtype

    def forward(self, x, mask, mu, t, spks=None, cond=None, r=None):
        if not self.use_graphs:  # without graphs, padding would only add frames to compute
            return self.estimator(x, mask, mu, t, spks, cond, r=r)
        T = x.size(2)
        args = self.padded(x, mask, mu, t, spks, cond)
        padded = args[0].size(2)
        if r is not None:
            return self.estimator(*args, r=r)[..., :T]
        key = (padded, x.size(0), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(args)
        graph, static_in, static_out = self._graphs[key]
        for buf, a in zip(static_in, args):
            buf.copy_(a)
        graph.replay()
        self.replays += 1
        return static_out[..., :T].clone()

    def padded(self, x, mask, mu, t, spks, cond):
        """The estimator's inputs with the frame axis padded up to the next bucket."""
        T = x.size(2)
        padded = -(-T // self.bucket) * self.bucket

        def pad(a):
            return F.pad(a, (0, padded - T))

        return pad(x), pad(mask), pad(mu), t, spks, pad(cond)

    def _capture(self, args):
        static_in = tuple(a.clone() for a in args)
        graph, static_out = capture(lambda: self.estimator(*static_in))
        return graph, static_in, static_out

    def evidence(self) -> dict:
        return {"bucket": self.bucket if self.use_graphs else None, "graphs": self.use_graphs,
                "captured": len(self._graphs),
                "replays": self.replays}


def _compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far: a call that raises it compiled."""
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


COMPILED_BLOCKS = ("BasicTransformerBlock", "CausalResnetBlock1D", "ResnetBlock1D")


class CompiledEstimator(nn.Module):
    """The CFM estimator with its blocks through `torch.compile`: inductor's C++ backend on a CPU
    (the norms, Mish and GELU around the products fused into loops), `mode="reduce-overhead"`
    (CUDA graphs recorded by compile) on CUDA, so the estimator a GPU would run is the one the CPU
    tests run. Frame counts are symbolic (`dynamic=True`), so one compile serves every utterance
    length; the calls that compiled (the first, and any a new input kind forces) are timed apart
    from the steady state (`compile_s`).

    The blocks, not the whole forward: the forward builds its attention masks with a
    data-dependent check (a `.item()` in upstream's `add_optional_chunk_mask`) that splits
    dynamo's graph into many, each compiled apart (the README gives the measured cost). The
    transformer and resnet blocks hold the products and the elementwise chains, and one compile
    per block kind serves all of its instances. Dynamic int8 linears are refused: dynamo
    does not trace their packed weights (TorchScript objects).

    On CUDA this replaces `BucketedEstimator`'s hand-captured graphs; those stay for fast-s3gen
    alone, whose bucket padding bounds how many graphs a GPU records."""

    def __init__(self, estimator: nn.Module, mode: str | None = None):
        super().__init__()
        quant.refuse_for_compile(estimator, "compile a float or bfloat16 estimator")
        blocks = [m for m in estimator.modules() if type(m).__name__ in COMPILED_BLOCKS]
        if not blocks:
            raise ValueError(f"the estimator has none of the blocks compiled here ({', '.join(COMPILED_BLOCKS)})")
        for block in blocks:
            block.compile(dynamic=True, mode=mode)
        self.estimator, self.mode, self.n_blocks = estimator, mode, len(blocks)
        self.calls = self.compiles = 0
        self.compile_s = 0.0

    @property
    def dtype(self):  # read by upstream's solve_euler to cast its inputs
        return self.estimator.dtype

    def forward(self, x, mask, mu, t, spks=None, cond=None, r=None):
        before, start = _compiled_graphs(), time.perf_counter()
        out = self.estimator(x, mask, mu, t, spks, cond, r=r)
        compiled = _compiled_graphs() - before
        if compiled:
            self.compiles += compiled
            self.compile_s += time.perf_counter() - start
        self.calls += 1
        return out

    def evidence(self) -> dict:
        return {"backend": "inductor", "mode": self.mode or "default", "dynamic": True, "blocks": self.n_blocks,
                "calls": self.calls, "graphs_compiled": self.compiles, "compile_s": round(self.compile_s, 2)}
