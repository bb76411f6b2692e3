"""The fast path (ttsopt.engine) as variants: the architectural changes that go past drop-in
optimizations — a leaner T3 decode, a cheaper S3Gen flow, int8 linears, streaming.

`batch` is not here: it changes what a run is (N prompts at once), not one stage of a
single-prompt synthesis, so it is measured by `ttsopt bench --batch N`.
"""
from __future__ import annotations

from collections import Counter

import torch

from ..core.claims import Claim
from ..engine import attention, quant, vocoder
from ..engine.s3gen import (
    UPSTREAM_CFM_STEPS,
    UPSTREAM_MEANFLOW_STEPS,
    BucketedEstimator,
    CastConvolution,
    CompiledEstimator,
    FlowStage,
    cast_convolutions,
)
from ..engine.stream import ChunkedS3Gen
from ..engine.t3 import llama_step, native
from ..engine.t3.fast import FastT3
from ..engine.t3.fast_turbo import FastTurboT3
from ..measure import weights
from ..measure.env import BF16_UNITS, bf16_units, cpu_flags
from .base import NotApplicable, Variant, dtypes_of, native_units
from .quantize import BNB_CLAIM

_MIB = 2**20


class FastT3Variant(Variant):
    """The original's Llama T3 (`engine.t3.fast`) or Turbo's GPT-2 T3 (`engine.t3.fast_turbo`)."""
    name = "fast-t3"
    models = ("original", "turbo", "multilingual")  # the multilingual model's alignment analyzer comes along
    claims = (Claim("t3_decode", "static KV cache, on-device sampling and a step without per-module dispatch "
                                 "(CUDA graph on CUDA): less T3 decode time for the same tokens"),)
    lossless = True

    def apply(self, pipeline):
        return _in_place_of_t3(pipeline, _fast_runner(pipeline), self.name)

    def after_load(self, pipeline, runner) -> None:
        runner.prepare()  # after every variant: the plan is built over the layers int8 leaves

    def evidence(self, pipeline, runner) -> dict:
        return {"t3": type(runner).__name__, **runner.evidence()}

    def engaged(self, evidence):
        steps = evidence.get("steps", 0)
        return steps > 0, f"{steps} decode steps on the static-KV path ({evidence.get('layer_step')})"


def _fast_runner(pipeline):
    """fast-t3's runner for PIPELINE's model: Turbo's GPT-2 loop or the Llama one."""
    t3 = pipeline.model.t3
    return FastTurboT3(t3) if pipeline.model.name == "turbo" else FastT3(t3)


_FAST_RUNNERS = (FastT3, FastTurboT3)


def _in_place_of_t3(pipeline, runner, by: str):
    """RUNNER as the pipeline's T3, taking over the alignment analyzer the runner it replaces
    holds (the multilingual model's, as upstream runs it on every step)."""
    factory = getattr(pipeline.stages["t3"], "analyzer_factory", None)
    if factory is not None:
        if not hasattr(runner, "analyzer_factory"):
            raise NotApplicable(by, f"this T3 runs upstream's alignment analyzer, which {type(runner).__name__} "
                                    "cannot feed")
        runner.analyzer_factory = factory
    pipeline.replace("t3", runner, by=by)
    return runner


class CompiledT3Variant(Variant):
    """fast-t3's loop with every decode layer run through `torch.compile` (`engine.t3.compiled`):
    the step a GPU would run (mode "reduce-overhead" there) is the one the CPU tests run. Float
    layers only: dynamo does not trace dynamic int8 linears' packed weights, so on a CPU the int8
    TorchScript step (`fast-t3+cpu-int8-t3`) stays the fast one; this measures what compiling buys
    the float step, its compile time apart (evidence `compile.compile_s`)."""
    name = "compiled-t3"
    models = ("original", "multilingual")
    not_for = {"turbo": "the compiled step is the Llama layer; Turbo's GPT-2 step is not compiled"}
    claims = (Claim("t3_decode", "fast-t3's static-KV step with its layers compiled by torch.compile (inductor): "
                                 "fused elementwise chains, less T3 decode time, same tokens within float rounding"),)
    lossless = False  # inductor's fused loops round differently; tests hold the tokens to the eager step's
    conflicts = ("fast-t3", "cpu-int8", "cpu-int8-t3", "cpu-int4-t3")

    def apply(self, pipeline):
        return _in_place_of_t3(pipeline, FastT3(pipeline.model.t3, compiled=True), self.name)

    def evidence(self, pipeline, runner) -> dict:
        return {"t3": type(runner).__name__, **runner.evidence()}

    def engaged(self, evidence):
        steps, compile_ = evidence.get("steps", 0), evidence.get("compile", {})
        ok = steps > 0 and compile_.get("layer_calls", 0) > 0
        return ok, (f"{steps} decode steps, {compile_.get('layer_calls', 0)} compiled layer calls "
                    f"(compiled in {compile_.get('compile_s')} s)")


def flow_precision(device_type: str, flags: set[str], model: str = "original") -> tuple[str, str]:
    """The estimator's precision for fast-s3gen on a device with CPU FLAGS for MODEL, and why.
    bfloat16 where it is native and multiplies fastest (CUDA, a CPU with AMX tiles) and for Turbo's
    two mean-flow steps on any CPU with BF16_UNITS. On a CPU with bfloat16 units but no AMX, the
    original's and multilingual's ten guided steps go further from float32's mel in bfloat16 than
    with int8 linear layers in a float32 estimator, which take the same time there (README), so
    they take int8, their attention (`engine.attention.flow_attention`) and convolutions still in
    bfloat16 (`flow_convolutions`). Without bfloat16 units it would be emulated, slower than
    float32: int8 linear layers, convolutions in float32. On a CPU the encoder (a conformer, mostly
    linear layers) gets int8 linears either way."""
    if device_type == "cuda":
        return "bfloat16", "CUDA: bfloat16 is native"
    units = bf16_units(flags)
    if units and ("amx_bf16" in units or model == "turbo"):
        return "bfloat16", f"this CPU has {', '.join(units)}: bfloat16 is native"
    if units:
        return "int8", (f"this CPU has {', '.join(units)} without AMX: int8 linear layers in a float32 estimator take "
                        "a bfloat16 one's time there and keep its ten guided steps nearer float32's mel; the "
                        "encoder's linear layers int8 too")
    return "int8", (f"this CPU has none of {', '.join(BF16_UNITS)}, so bfloat16 would be emulated, slower than "
                    "float32: int8 linear layers in the estimator and the encoder instead, convolutions in float32")


def flow_convolutions(precision: str, kind: str) -> torch.dtype | None:
    """The dtype an estimator in PRECISION attending as KIND computes its convolutions in, where it
    is not the estimator's own: bfloat16 for an int8 estimator attending in bfloat16 products (a CPU
    with bfloat16 units but no AMX), whose float32 convolutions took longer than bfloat16 ones there
    for a mel hardly further from float32's (README); None elsewhere."""
    return torch.bfloat16 if precision == "int8" and kind == attention.BF16_PRODUCTS else None


def use_flow(pipeline, precision: str, kind: str, convolutions: torch.dtype | None = None) -> None:
    """PIPELINE's flow as fast-s3gen makes it: the estimator wrapped (`BucketedEstimator`) in
    PRECISION ("bfloat16", or "int8": dynamic int8 linear layers), on a CPU the encoder's linear
    layers in int8, the attention KIND (`engine.attention`) and, unless None, the convolutions in
    CONVOLUTIONS (`engine.s3gen.cast_convolutions`). `fast-s3gen` picks them for the device;
    `scripts/flow-steps.py` names them, to time one choice beside another."""
    # bfloat16 for the estimator only: an encoder in bfloat16 would make `mu` bfloat16 and change the
    # CFM noise (randn_like(mu)) upstream draws for the same seed. Int8 linears return float32, so on
    # a CPU the encoder's linears go int8 whatever the estimator's precision, and the noise stays the
    # same; dynamic int8 has no CUDA kernels, so there the encoder stays as it is.
    flow = pipeline.model.s3gen.flow
    decoder = flow.decoder
    if not isinstance(decoder.estimator, BucketedEstimator):
        decoder.estimator = BucketedEstimator(decoder.estimator, graphs=pipeline.device.type == "cuda")
    if precision == "bfloat16":
        decoder.estimator.to(torch.bfloat16)
    else:
        quant.quantize_linears(decoder.estimator.estimator)
    if pipeline.device.type == "cpu":
        quant.quantize_linears(flow.encoder)
    if kind in (attention.PRODUCTS, attention.BF16_PRODUCTS):
        attention.use_products(decoder.estimator, dtype=torch.bfloat16 if kind == attention.BF16_PRODUCTS else None)
    elif pipeline.device.type == "cpu":
        attention.use_fused(decoder.estimator, unmasked=True)
    if convolutions is not None:
        cast_convolutions(decoder.estimator.estimator, convolutions)


class FastS3GenVariant(Variant):
    name = "fast-s3gen"
    # Turbo's mean-flow estimator takes the same wrapper and precision choice: two steps at batch 1
    # with the step end `r` (on CUDA BucketedEstimator pads those calls but captures no graph for them).
    models = ("original", "turbo", "multilingual")
    claims = (Claim("s3gen_flow", "the CFM estimator (most of the flow's time) in a cheaper precision for the "
                                  "device and model (bfloat16 where native and the fastest, else int8 linear layers; "
                                  "on a CPU with bfloat16 units but no AMX the attention as three batched "
                                  "products in bfloat16 and the convolutions in bfloat16), the encoder's linear "
                                  "layers in int8 on a CPU, padded to length buckets and replayed from CUDA graphs "
                                  "on CUDA: less flow time, a fidelity trade-off"),)
    lossless = False

    def apply(self, pipeline):
        flags = cpu_flags()
        precision, why = flow_precision(pipeline.device.type, flags, pipeline.model.name)
        kind, attention_why = attention.flow_attention(pipeline.device.type, flags, precision)
        estimator = pipeline.model.s3gen.flow.decoder.estimator
        inner = estimator.estimator if isinstance(estimator, BucketedEstimator) else estimator
        if precision == "int8" and isinstance(inner, CompiledEstimator):
            raise NotApplicable(self.name, f"{why}, and compiled-s3gen's estimator cannot take them (dynamo does "
                                           "not trace dynamic int8 linears); run one of the two")
        convolutions = flow_convolutions(precision, kind)
        use_flow(pipeline, precision, kind, convolutions)
        return {"precision": precision, "why": why, "attention": kind, "attention_why": attention_why,
                "convolutions": str(convolutions).replace("torch.", "") if convolutions else None}

    def evidence(self, pipeline, state) -> dict:
        flow = pipeline.model.s3gen.flow
        est = flow.decoder.estimator
        stage = pipeline.find("flow", FlowStage)
        return {**state, "estimator_dtypes": dtypes_of(est), "estimator_linears": weights.linear_counts(est),
                "encoder_dtypes": dtypes_of(flow.encoder), "encoder_linears": weights.linear_counts(flow.encoder),
                "vocoder_dtypes": dtypes_of(pipeline.model.s3gen.mel2wav),
                "attention_processors": attention.processors(est), "attention_masks": attention.masks(est),
                "estimator": est.evidence() if isinstance(est, BucketedEstimator) else "not wrapped",
                "cast_convolutions": sum(isinstance(m, CastConvolution) for m in est.modules()),
                "flow_calls": stage.calls if stage else None}

    def engaged(self, evidence):
        calls = evidence.get("flow_calls") or 0
        enc = sum(c for kind, c in evidence.get("encoder_linears", {}).items() if "dynamic" in kind)
        if evidence.get("precision") == "int8":
            n = sum(c for kind, c in evidence.get("estimator_linears", {}).items() if "dynamic" in kind)
            engaged, why = n > 0 and calls > 0, (f"{n} int8 linear layers in the estimator and {enc} in the encoder, "
                                                 f"{calls} flow call(s)")
        else:
            cast = evidence.get("estimator_dtypes", {}).get("bfloat16", 0)
            engaged, why = cast > 0 and calls > 0, (f"{cast} estimator parameters in bfloat16, {enc} int8 linear "
                                                    f"layers in the encoder, {calls} flow call(s)")
        if evidence.get("convolutions"):  # cast where fast-s3gen chose a dtype of their own
            cast = evidence.get("cast_convolutions", 0)
            engaged, why = engaged and cast > 0, f"{why}, {cast} convolutions in {evidence['convolutions']}"
        kind = evidence.get("attention")
        if kind not in (attention.PRODUCTS, attention.BF16_PRODUCTS):
            return engaged, why
        products = evidence.get("attention_processors", {}).get(attention.ProductAttention.__name__, 0)
        return engaged and products > 0, f"{why}, {products} attention modules as three {kind}"


class FastVocoderVariant(Variant):
    """S3Gen's HiFT vocoder with its 1-D convolutions as channels-last 2-D ones of height 1
    (`engine.vocoder`): the same weights and arithmetic, its sums in another order."""
    name = "fast-vocoder"
    models = ("original", "turbo", "multilingual")  # all three speak through the same HiFT
    claims = (Claim("vocoder", "the vocoder's 1-D convolutions as channels-last 2-D convolutions of height 1 and "
                               "its Snake activations in place: less vocoder time for the same waveform within "
                               "float32 rounding"),)
    lossless = True

    def apply(self, pipeline):
        return vocoder.use_rows(pipeline.model.s3gen.mel2wav)

    def evidence(self, pipeline, decode) -> dict:
        return vocoder.evidence(pipeline.model.s3gen.mel2wav)

    def engaged(self, evidence):
        calls = evidence.get("calls", 0)
        return calls > 0, (f"{calls} vocoder call(s) through {evidence.get('convolutions', 0)} channels-last "
                           "convolutions")


class Bf16VocoderVariant(Variant):
    """fast-vocoder's rows in bfloat16 (`engine.vocoder.use_dtype`): HiFT's convolutions and Snake
    activations hold and compute bfloat16, the STFT, iSTFT, f0 predictor and sine source stay
    float32. Where bfloat16 is emulated (a CPU without BF16_UNITS) it still runs, slower, and its
    evidence says so, as bf16's does. On CUDA the same modules run; not measured there."""
    name = "bf16-vocoder"
    models = ("original", "turbo", "multilingual")
    claims = (Claim("vocoder", "the vocoder's convolutions and Snake activations in bfloat16 as channels-last rows, "
                               "its STFT and iSTFT in float32: less vocoder time on a CPU with bfloat16 units "
                               "(AMX tiles or avx512_bf16), a fidelity trade-off"),)
    lossless = False
    conflicts = ("bf16", "fp16", "vocos")  # whole-model casts and autocast, or another vocoder

    def apply(self, pipeline):
        return vocoder.use_dtype(pipeline.model.s3gen.mel2wav, torch.bfloat16)

    def evidence(self, pipeline, decode) -> dict:
        return {**vocoder.evidence(pipeline.model.s3gen.mel2wav), **native_units(pipeline, BF16_UNITS, torch.bfloat16)}

    def engaged(self, evidence):
        calls, cast = evidence.get("calls", 0), evidence.get("weights_in_dtype", 0)
        ok = calls > 0 and cast > 0 and evidence.get("dtype") == "bfloat16"
        return ok, f"{calls} vocoder call(s) through {cast} convolutions in {evidence.get('dtype')}"


class CompiledS3GenVariant(Variant):
    """The flow's estimator through `torch.compile` (`engine.s3gen.CompiledEstimator`), in
    whatever precision it holds when compiled: float32 alone, bfloat16 after fast-s3gen on a CPU
    with bf16 units. On CUDA compile records the graphs (reduce-overhead), so fast-s3gen's own
    capture is turned off. Not with int8 estimator linears (fast-s3gen without bf16 units,
    cpu-int8): dynamo does not trace them."""
    name = "compiled-s3gen"
    models = ("original", "turbo", "multilingual")
    claims = (Claim("s3gen_flow", "the CFM estimator's blocks compiled by torch.compile (inductor's C++ backend; "
                                  "on CUDA, graphs recorded by compile): fused loops around the products, less "
                                  "flow time, the same mel within float rounding"),)
    lossless = False  # inductor's fused loops round differently; a test holds the mel to the eager one's
    conflicts = ("cpu-int8",)

    def apply(self, pipeline):
        decoder = pipeline.model.s3gen.flow.decoder
        holder = decoder.estimator if isinstance(decoder.estimator, BucketedEstimator) else decoder
        mode = "reduce-overhead" if pipeline.device.type == "cuda" else None
        try:
            holder.estimator = CompiledEstimator(holder.estimator, mode=mode)
        except ValueError as exc:
            raise NotApplicable(self.name, str(exc)) from exc
        if holder is not decoder:
            holder.use_graphs = False  # compile records the CUDA graphs now
        return holder.estimator

    def evidence(self, pipeline, compiled) -> dict:
        return {**compiled.evidence(), "estimator_dtypes": dtypes_of(compiled.estimator)}

    def engaged(self, evidence):
        calls = evidence.get("calls", 0)
        return calls > 0 and evidence.get("graphs_compiled", 0) > 0, (
            f"{calls} compiled estimator calls, {evidence.get('graphs_compiled', 0)} graph(s) compiled "
            f"in {evidence.get('compile_s')} s")


CFM_STEP_VARIANTS = (1, 2, 4, 6)


class CfmSteps(Variant):
    """Fewer flow steps. The original model's CFM takes 10 Euler steps (2, 4 or 6 are offered);
    Turbo's mean-flow decoder takes 2 already, and 1 is the trade-off left to offer there."""
    lossless = False

    def __init__(self, steps: int):
        self.steps = steps
        self.name = f"cfm-steps-{steps}"
        if steps == 1:
            self.models = ("turbo",)
            one = ("one Euler step of the {}'s 10-step CFM is not a trade-off upstream offers; "
                   "cfm-steps-2, -4 and -6 are")
            self.not_for = {m: one.format(f"{m} model") for m in ("original", "multilingual")}
            text = f"1 mean-flow step instead of Turbo's {UPSTREAM_MEANFLOW_STEPS}"
        else:
            self.not_for = {"turbo": f"Turbo's mean-flow decoder takes {UPSTREAM_MEANFLOW_STEPS} steps already; "
                                     "cfm-steps-1 is its trade-off"}
            text = f"{steps} CFM Euler steps instead of upstream's {UPSTREAM_CFM_STEPS}"
        self.claims = (Claim("s3gen_flow", f"{text}: less flow time; a quality trade-off, not lossless"),)
        self.conflicts = tuple(f"cfm-steps-{k}" for k in CFM_STEP_VARIANTS if k != steps)

    def apply(self, pipeline):
        stage = pipeline.find("flow", FlowStage)
        stage.n_timesteps = self.steps
        return stage

    def evidence(self, pipeline, stage) -> dict:
        upstream = UPSTREAM_MEANFLOW_STEPS if stage.s3gen.meanflow else UPSTREAM_CFM_STEPS
        return {"n_cfm_timesteps": stage.steps, "upstream": upstream, "flow_calls": stage.calls}

    def engaged(self, evidence):
        ok = evidence.get("n_cfm_timesteps") == self.steps and evidence.get("flow_calls", 0) > 0
        return ok, f"{evidence.get('flow_calls', 0)} flow call(s) with {evidence.get('n_cfm_timesteps')} steps"


class _DynamicInt8(Variant):
    """What every dynamic-int8 variant shares: CPU kernels only, lossy, every model of the family."""
    requires = ("CPU (dynamic int8 kernels are CPU-only)",)
    lossless = False
    models = ("original", "turbo", "multilingual")

    def check(self, pipeline=None):
        if pipeline is not None and pipeline.device.type != "cpu":
            return f"dynamic int8 runs on CPU only; the model is on {pipeline.device}"
        return None


def dynamic_int8(spec: str) -> bool:
    """Whether SPEC has a dynamic-int8 variant: its products quantize each input with one scale over
    all its rows, so what one row computes depends on the others (a batch is lossy)."""
    from . import parse
    return any(isinstance(v, _DynamicInt8) for v in parse(spec))


class CpuInt8(_DynamicInt8):
    """Dynamic int8 for the linear layers of T3's transformer and (unless t3_only) S3Gen's flow.
    T3's speech head stays float: upstream reads `t3.device` from its weight. Turbo's GPT-2 layers
    are quantized too (`engine.quant` turns its Conv1D projections into the linears they are).
    A Llama layer's q, k and v, and its gate and up, are quantized as one matrix each
    (`llama_step.joins`): the same int8 rows, one product each, and the matrices fast-t3's step reads."""

    def __init__(self, name: str, t3_only: bool, aliases: tuple[str, ...] = ()):
        self.name, self.t3_only, self.aliases = name, t3_only, aliases
        where = "T3 transformer" if t3_only else "T3 transformer and S3Gen flow"
        speed = Claim("t3_decode" if t3_only else "rtf", f"dynamic int8 linear layers in the {where}: a quarter "
                      "of the weight bytes to read per step, so less time")
        self.claims = (Claim(BNB_CLAIM.metric, BNB_CLAIM.text + "; int8 linears are its CPU counterpart",
                             BNB_CLAIM.low, BNB_CLAIM.high, source=BNB_CLAIM.source), speed) if t3_only else (speed,)
        self.conflicts = ("fast-s3gen", "bf16", "fp16") if not t3_only else ("bf16", "fp16")

    def _targets(self, pipeline):
        targets = {"t3.tfmr": pipeline.model.t3.tfmr}
        if not self.t3_only:
            targets["s3gen.flow"] = pipeline.model.s3gen.flow
        return targets

    def apply(self, pipeline):
        before = {name: weights.linear_bytes(m) for name, m in self._targets(pipeline).items()}
        for module in self._targets(pipeline).values():
            quant.quantize_linears(module, joins=llama_step.joins(module) if module is pipeline.model.t3.tfmr else ())
        return before

    def evidence(self, pipeline, before) -> dict:
        return {name: {"linear_types": weights.linear_counts(m), "linear_mb_before": round(before[name] / _MIB, 1),
                       "linear_mb_after": round(weights.linear_bytes(m) / _MIB, 1)}
                for name, m in self._targets(pipeline).items()}

    def engaged(self, evidence):
        n = sum(count for part in evidence.values() if isinstance(part, dict)
                for kind, count in part.get("linear_types", {}).items() if "dynamic" in kind or "JoinedPart" in kind)
        return n > 0, f"{n} dynamic int8 linear layers"


class CpuInt8Head(_DynamicInt8):
    """T3's speech head as a dynamic int8 linear with a scale per output channel (`quant.Int8Head`).
    With the transformer in int8 the head is the one float32 matrix a decode step still reads (8194
    rows for the original model), and a float product at two rows reads it far below the memory's
    speed; `ttsopt bench` shows the step with and without it. Logits come from int8 weights, so the
    bench's fidelity lines (token match, teacher-forced logit error) say what it costs."""
    name = "cpu-int8-head"
    claims = (Claim("t3_decode", "T3's speech head in int8: a quarter of its float32 bytes per step, so less "
                                 "time; a fidelity trade-off"),)
    conflicts = ("bf16", "fp16")

    def apply(self, pipeline):
        t3 = pipeline.model.t3
        before = weights.linear_bytes(t3.speech_head)
        if not isinstance(t3.speech_head, quant.Int8Head):
            t3.speech_head = quant.Int8Head(t3.speech_head)
        return before

    def evidence(self, pipeline, before) -> dict:
        head = pipeline.model.t3.speech_head
        return {"speech_head": {"type": type(head).__name__, "linear_types": weights.linear_counts(head),
                                "mb_before": round(before / _MIB, 1),
                                "mb_after": round(weights.linear_bytes(head) / _MIB, 1)}}

    def engaged(self, evidence):
        part = evidence.get("speech_head", {})
        n = sum(c for kind, c in part.get("linear_types", {}).items() if "dynamic" in kind)
        return n > 0, f"speech head {part.get('type')}: {part.get('mb_before')} -> {part.get('mb_after')} MiB"


class CpuInt4T3(Variant):
    """Group-wise int4 weights (`engine.quant.Int4Linear`) for the linear layers of T3's
    transformer: through ttsopt's native int4 kernel where the CPU has AVX-512 VNNI or AVX2 (inputs
    quantized to u8 per row), else torch's own CPU int4 kernel (inputs in bfloat16); the evidence
    names the kernel. The speech head stays float, as with int8 (cpu-int8-head makes it int8)."""
    name = "cpu-int4-t3"
    requires = ("CPU, with ttsopt's native int4 kernel (AVX-512 VNNI or AVX2) or torch's CPU int4 kernel",)
    lossless = False
    models = ("original", "turbo", "multilingual")
    claims = (Claim("t3_decode", "int4 weights in groups of 64 in the T3 transformer: an eighth of float32's "
                                 "weight bytes to read per step, so less time; a fidelity trade-off"),)
    conflicts = ("cpu-int8", "cpu-int8-t3", "bf16", "fp16")

    def check(self, pipeline=None):
        if pipeline is not None and pipeline.device.type != "cpu":
            return f"the int4 kernels used here are CPU ones; the model is on {pipeline.device}"
        if not quant.int4_available() and (why := quant.int4_here()) is not None:
            return ("neither int4 kernel can run here: this torch has no CPU int4 weight kernel "
                    f"(_weight_int4pack_mm_for_cpu), and ttsopt's native one cannot ({why})")
        return None

    def apply(self, pipeline):
        tfmr = pipeline.model.t3.tfmr
        before = weights.linear_bytes(tfmr)
        joins = llama_step.joins(tfmr)  # a Llama layer's q/k/v and gate/up, found while they are nn.Linear
        return {"replaced": quant.quantize_int4(tfmr, joins=joins), "linear_mb_before": round(before / _MIB, 1)}

    def evidence(self, pipeline, state) -> dict:
        tfmr = pipeline.model.t3.tfmr
        layers = [m for m in tfmr.modules() if isinstance(m, quant.Int4Linear)]
        native_kind = f"native {native.layer().int4_isa}"
        kernels = dict(Counter(native_kind if m.kernel == "native" else m.kernel for m in layers))
        why = {m.why_not_native for m in layers if m.why_not_native}
        return {"t3.tfmr": {"linear_types": weights.linear_counts(tfmr), "group": quant.INT4_GROUP,
                            "kernels": kernels, **({"not_native": sorted(why)} if why else {}),
                            "linear_mb_before": state["linear_mb_before"],
                            "linear_mb_after": round(weights.linear_bytes(tfmr) / _MIB, 1)}}

    def engaged(self, evidence):
        n = sum(c for kind, c in evidence.get("t3.tfmr", {}).get("linear_types", {}).items() if "Int4" in kind)
        kernels = evidence.get("t3.tfmr", {}).get("kernels", {})
        return n > 0, f"{n} int4 linear layers ({', '.join(f'{c} on the {k} kernel' for k, c in kernels.items())})"


class HalfKV(Variant):
    """fast-t3's KV cache in half precision (float16): a decode step reads every cached key and
    value, so this halves that part of its reading, a part that grows with the utterance while the
    weights' stays fixed. Keys and values are rounded to the nearest half as they are written and
    widened back to float32 as the native layer's attention reads them (F16C's conversions); the
    arithmetic stays float32. After fast-t3 in a spec it changes that runner's cache; alone, or
    before it, it installs fast-t3's runner itself (so alone it measures fast-t3 as well: its own
    gain is `fast-t3...` against `fast-t3...+half-kv`, side by side in `scripts/t3-steps.py`). The
    bench's memory floor counts the cache at two bytes a value."""
    name = "half-kv"
    requires = ("CPU, with ttsopt's native decode layer (its attention reads the half cache)",)
    lossless = False
    models = ("original", "turbo", "multilingual")
    claims = (Claim("t3_decode", "T3's KV cache in half precision: half the cache's bytes to read per step, so "
                                 "less time, more so the longer the utterance; a fidelity trade-off"),)
    conflicts = ("compiled-t3",)

    def check(self, pipeline=None):
        if pipeline is None:
            return None
        if pipeline.device.type != "cpu":
            return f"the half cache is read by ttsopt's native CPU layer; the model is on {pipeline.device}"
        if native.layer().op is None:
            return (f"{native.layer().why}: without it the step's attention would widen the half cache to "
                    "float32 at every step, reading more than a float32 cache")
        return None

    def apply(self, pipeline):
        runner = pipeline.find("t3", _FAST_RUNNERS)
        if runner is None:
            runner = _in_place_of_t3(pipeline, _fast_runner(pipeline), self.name)
        runner.kv_dtype = torch.float16
        return runner

    def after_load(self, pipeline, runner) -> None:
        runner.prepare()

    def evidence(self, pipeline, runner) -> dict:
        current = pipeline.find("t3", _FAST_RUNNERS)
        if current is not runner:
            return {"replaced": True, "t3": type(pipeline.stages["t3"]).__name__}
        return {"t3": type(runner).__name__, "kv_dtype": str(runner.kv_dtype).replace("torch.", ""),
                "layer_step": runner.evidence().get("layer_step"), "steps": runner.steps}

    def engaged(self, evidence):
        steps, kind = evidence.get("steps", 0), str(evidence.get("layer_step"))
        if evidence.get("replaced") or evidence.get("kv_dtype") != "float16":
            return False, "a later variant replaced the T3 runner: its cache is not half"
        if not kind.startswith("native"):
            return False, f"the step ran {kind}, whose attention widens the half cache to float32 at every step"
        return steps > 0, f"{steps} decode steps over a float16 cache, read by the {kind} layer's attention"


class StreamVariant(Variant):
    """As stage wrappers, S3Gen renders the tokens chunk by chunk (the cost of streaming); time to
    first audio needs T3's live stream: `ttsopt.engine.stream.synthesize_stream`, bench --stream."""
    name = "stream"
    claims = (Claim("rtf", "S3Gen renders T3's tokens in chunks of 25 so audio can start before T3 finishes; "
                           "as a whole synthesis it costs the chunks' repeated work"),)
    lossless = False

    def apply(self, pipeline):
        chunked = ChunkedS3Gen(pipeline.model.s3gen)
        pipeline.wrap("flow", chunked.flow, by=self.name)
        pipeline.wrap("vocode", chunked.vocode, by=self.name)
        return chunked

    def evidence(self, pipeline, chunked) -> dict:
        return {"chunk_tokens": chunked.chunk_tokens, "flow_calls": chunked.flow_calls,
                "most_chunks_per_utterance": chunked.most_chunks, "last_mel_frames_per_chunk": chunked.segments}

    def engaged(self, evidence):
        most = evidence.get("most_chunks_per_utterance", 0)
        return most > 1, (f"utterances were rendered in up to {most} chunks" if most > 1 else
                          f"every utterance fit in one chunk of {evidence.get('chunk_tokens')} tokens: "
                          "rendered exactly as without streaming")


VARIANTS = [FastT3Variant(), CompiledT3Variant(), FastS3GenVariant(), FastVocoderVariant(), Bf16VocoderVariant(),
            CompiledS3GenVariant(),
            CpuInt8("cpu-int8", t3_only=False), CpuInt8("cpu-int8-t3", t3_only=True, aliases=("torch-int8-t3",)),
            CpuInt8Head(), CpuInt4T3(), HalfKV(),
            *map(CfmSteps, CFM_STEP_VARIANTS),
            StreamVariant()]
