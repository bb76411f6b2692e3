"""`ttsopt synth`: one synthesis, its wav, its stage table and RTF."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core import catalog
from ..core.errors import UserError
from .options import MAX_TOKENS, add_language, add_model, check_language, count, tokens


def register(sub) -> None:
    p = sub.add_parser("synth", help="synthesize one text and print where the time went")
    p.add_argument("text", help="the text to speak (quote it); in --language's language")
    add_model(p, default_source="tiny")
    add_language(p)
    p.add_argument("--out", required=True, help="wav file to write")
    p.add_argument("--tokens", type=tokens, default=None,
                   help=f"force exactly N speech tokens, 1 to {MAX_TOKENS}; 25 are one second of speech "
                        "(needed for random weights to stop; default: the model's natural stop)")
    p.add_argument("--seed", type=count, default=0, help="sampling seed (default: 0)")
    p.add_argument("--model-seed", type=count, default=0,
                   help="seed of the random weights of the synthetic and tiny sources (default: 0)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="precision of T3 and the S3Gen flow (default: float32)")
    p.add_argument("--reference", default=None, help="reference voice clip (default: the model's own voice)")
    p.add_argument("--variant", default=None, help="variant or composition a+b (see `ttsopt list`)")
    p.set_defaults(func=run)


def _check_out(path: str) -> None:
    """A bad output path is refused before the model loads, not after the synthesis."""
    out = Path(path)
    if out.suffix.lower() != ".wav":
        raise UserError(f"--out must name a .wav file, got {path!r}")
    if out.is_dir():
        raise UserError(f"--out {path} is a directory; name a .wav file")
    if not out.parent.is_dir():
        raise UserError(f"--out {path}: the folder {out.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    _check_out(args.out)
    if not args.text.strip():
        raise UserError("text is empty: give at least one word to speak")
    check_language(args)
    catalog.check(args.variant)  # a misspelt name is refused before torch is imported
    from .. import variants
    if args.variant:
        variants.parse(args.variant)  # unknown names are refused before the model loads
    from ..engine import sources
    from ..engine.audio import write_wav
    from ..engine.pipeline import Pipeline
    from ..measure.timing import StageTimes

    model = sources.load(args.source, device=args.device, dtype=args.dtype, seed=args.model_seed, model=args.model)
    pipeline = Pipeline(model)
    pipeline.language = args.language
    applied = variants.apply(pipeline, args.variant) if args.variant else None
    if model.random_weights and args.tokens is None:
        print(f"note: {args.source} weights are random and rarely stop by themselves; "
              "pass --tokens N for a fixed length", flush=True)
    result = pipeline.synthesize(args.text, seed=args.seed, n_tokens=args.tokens, reference_wav=args.reference,
                                 timer=StageTimes(pipeline.device))
    write_wav(args.out, result.wav, result.sr)
    print(format_stages(result))
    if applied is not None:
        print(f"variant {args.variant} evidence: {applied.evidence_json(pipeline)}")
    print(f"load {model.load_s:.2f} s ({model.name} model, source {model.source}, {model.arch}, {model.device}) "
          f"-> {args.out}")
    return 0


def format_stages(result) -> str:
    width = max(len(k) for k in result.stages)
    lines = [f"{'stage':<{width}}  {'seconds':>9}  {'share':>6}"]
    for name, sec in result.stages.items():
        lines.append(f"{name:<{width}}  {sec:9.4f}  {sec / result.wall_s:6.1%}")
    lines.append(f"{'wall':<{width}}  {result.wall_s:9.4f}")
    lines.append(f"tokens {result.n_tokens}, audio {result.audio_s:.2f} s, "
                 f"T3 {result.tokens_per_s:.1f} tokens/s, RTF {result.rtf:.3f} "
                 "(wall / audio; below 1 is faster than real time)")
    return "\n".join(lines)
