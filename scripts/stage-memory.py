"""Resident memory of one process's first synthesis, stage by stage: load the model, apply a
variant spec, speak once, and print the whole synthesis's resident peak above its start and each
stage's (conditioning, T3's prefill and decode, the flow, the vocoder) above the resident set at
that stage's start. For reading where a first-synthesis peak in `ttsopt bench`'s fresh processes
comes from; run once per spec and setting, each in a fresh process, since a process keeps what
it freed.

    .venv/bin/python scripts/stage-memory.py fast-t3+cpu-int4-t3+cpu-int8-head [--model turbo] [--tokens 126]
"""
import argparse
import warnings

from ttsopt import variants
from ttsopt.engine import sources
from ttsopt.engine.pipeline import Pipeline
from ttsopt.measure import memory
from ttsopt.measure.env import cpu_model

TEXT = "The workbench measures every optimization in isolation, against the same baseline, with the same prompts."


def tracked(owner, name: str, peaks: dict) -> None:
    """Record OWNER.NAME's resident peak (MiB above its start) under PEAKS[NAME] at every call."""
    call = getattr(owner, name)

    def measured(*args, **kwargs):
        with memory.track("cpu", "call") as mem:
            out = call(*args, **kwargs)
        peaks.setdefault(name, []).append(mem.as_dict().get("rss_call_peak_mb", float("nan")))
        return out

    setattr(owner, name, measured)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", help="a variant spec, or 'baseline' for upstream's pipeline")
    p.add_argument("--model", default="original")
    p.add_argument("--source", default="synthetic")
    p.add_argument("--tokens", type=int, default=126, help="speech tokens to speak (bench's default length)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    with memory.track("cpu", "load") as loaded:
        pipeline = Pipeline(sources.load(args.source, "cpu", model=args.model))
        if args.spec != "baseline":
            variants.apply(pipeline, args.spec)
    peaks: dict[str, list[float]] = {}
    for name in ("prefill", "decode"):
        tracked(pipeline.t3, name, peaks)
    for name in ("conditioning", "flow", "vocode"):
        tracked(pipeline, name, peaks)
    with memory.track("cpu", "synth") as spoken:
        pipeline.synthesize(TEXT, seed=0, n_tokens=args.tokens)
    load, synth = loaded.as_dict(), spoken.as_dict()
    print(f"{args.spec}, {args.model} model, {args.tokens} tokens, {cpu_model()}: resident after load "
          f"{load.get('rss_resident_mb', float('nan')):.0f} MiB; first synthesis peak above its start "
          f"{synth.get('rss_synth_peak_mb', float('nan')):.0f} MiB")
    for name, values in peaks.items():
        print(f"  {name:13s} peak above its start {max(values):.0f} MiB ({len(values)} call(s))")


if __name__ == "__main__":
    main()
