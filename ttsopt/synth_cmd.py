"""`ttsopt synth`: one synthesis, its wav, its stage table and RTF."""
from __future__ import annotations

import argparse

from .audio import write_wav
from .errors import UserError


def register(sub) -> None:
    p = sub.add_parser("synth", help="synthesize one text and print where the time went")
    p.add_argument("text")
    p.add_argument("--source", default="tiny", help="hub, local:DIR, synthetic or tiny (default: tiny)")
    p.add_argument("--out", required=True, help="wav file to write")
    p.add_argument("--tokens", type=int, default=None,
                   help="force exactly N speech tokens (needed for random weights to stop)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (T3 and S3Gen flow)")
    p.add_argument("--reference", default=None, help="reference voice clip (default: the model's own voice)")
    p.add_argument("--variant", default=None, help="variant or composition a+b (see `ttsopt list`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import models
    from .pipeline import Pipeline

    if not args.out.lower().endswith(".wav"):
        raise UserError(f"--out must name a .wav file, got {args.out!r}")
    model = models.load(args.source, device=args.device, dtype=args.dtype, seed=args.seed)
    pipeline = Pipeline(model)
    evidence = None
    if args.variant:
        from . import variants
        evidence = variants.apply(pipeline, args.variant)
    if model.random_weights and args.tokens is None:
        print(f"note: {args.source} weights are random and rarely stop by themselves; "
              "pass --tokens N for a fixed length", flush=True)
    result = pipeline.synthesize(args.text, seed=args.seed, n_tokens=args.tokens, reference_wav=args.reference)
    write_wav(args.out, result.wav, result.sr)
    print(format_stages(result))
    if evidence is not None:
        print(f"variant {args.variant} evidence: {evidence.evidence_json(pipeline)}")
    print(f"load {model.load_s:.2f} s (source {model.source}, {model.arch}, {model.device}) -> {args.out}")
    return 0


def format_stages(result) -> str:
    width = max(len(k) for k in result.stages)
    lines = [f"{'stage':<{width}}  {'seconds':>9}  {'share':>6}"]
    for name, sec in result.stages.items():
        lines.append(f"{name:<{width}}  {sec:9.4f}  {sec / result.wall_s:6.1%}")
    lines.append(f"{'wall':<{width}}  {result.wall_s:9.4f}")
    lines.append(f"tokens {result.n_tokens}, audio {result.audio_s:.2f} s, "
                 f"T3 {result.tokens_per_s:.1f} tokens/s, RTF {result.rtf:.3f} (wall / audio; below 1 is faster than real time)")
    return "\n".join(lines)
