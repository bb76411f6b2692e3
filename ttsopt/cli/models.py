"""`ttsopt models`: the models of the Chatterbox family (original, turbo, multilingual) side by side in one
process on the same prompt, seeds and device: per-stage times, RTF, audio seconds per wall second
and memory for each, and each model's gain over the first with its interval over the trials.
`--save DIR` keeps the printed text and the records; `ttsopt report` shows them as its "Models"
section, also inside a suite's folder (`DIR/models`)."""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from ..core import params
from .options import MAX_TOKENS, count, device, positive, source, tokens
from .progress import steps


def register(sub) -> None:
    p = sub.add_parser("models", help="the Chatterbox models side by side: time per stage, RTF, memory")
    p.add_argument("--models", default=",".join(params.MODELS),
                   help=f"comma-separated models, the first is the reference (default: {','.join(params.MODELS)})")
    p.add_argument("--source", type=source, default="synthetic",
                   help="hub, synthetic or tiny (local:DIR holds one model's files, so it cannot serve two; "
                        "default: synthetic)")
    p.add_argument("--device", type=device, default="auto", help=f"{params.DEVICE_HELP} (default: auto)")
    p.add_argument("--tokens", type=tokens, default=None,
                   help=f"speech tokens per synthesis, every model, 1 to {MAX_TOKENS} (default: scaled with the "
                        "text, 1.2 per character; real weights stop by themselves)")
    p.add_argument("--prompt", default=None, help="text to speak (default: medium-01 of data/prompts/prompts.csv)")
    p.add_argument("--trials", type=positive, default=3, help="rounds of one synthesis per model (default: 3)")
    p.add_argument("--seed", type=count, default=0, help="trial t uses seed SEED + t for every model (default: 0)")
    p.add_argument("--stream", action="store_true",
                   help="also stream each synthesis (its first audio, RTF of the rest) right after it")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="also keep DIR/models.txt (what is printed) and the records (DIR/models.jsonl)")
    p.set_defaults(func=run)


def _names(spec: str) -> tuple[str, ...]:
    from ..core.errors import UserError
    names = tuple(params.check("models", n.strip(), params.model) for n in spec.split(",") if n.strip())
    if len(names) < 2:
        raise UserError(f"--models {spec!r}: name at least two models to compare, e.g. original,turbo")
    if len(set(names)) != len(names):
        raise UserError(f"--models {spec!r} names a model twice")
    return names


def run(args: argparse.Namespace) -> int:
    from ..core.errors import UserError
    from .bench import default_prompt

    names = _names(args.models)
    if args.source.startswith("local:"):
        raise UserError("--source local:DIR holds one model's files; compare models with synthetic, tiny or hub")
    text = args.prompt if args.prompt is not None else default_prompt()
    if not text.strip():
        raise UserError("--prompt is empty: give at least one word to speak")
    from ..experiment import profiles
    n = args.tokens or profiles.token_budget(profiles.get("full"), text)
    if args.save:
        return _run(args, names, text, n, Path(args.save))
    with tempfile.TemporaryDirectory(prefix="ttsopt-models-") as tmp:
        return _run(args, names, text, n, Path(tmp))


def _run(args, names, text: str, n: int, directory: Path) -> int:
    import torch

    from ..experiment import models
    from ..measure.env import cpu_model, cpu_units
    from ..report import models as report_models

    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("models.jsonl", "models.env.json"):
        (directory / stale).unlink(missing_ok=True)
    per_trial = len(names) * (2 if args.stream else 1)
    with steps(2 * len(names) + args.trials * per_trial, "models") as progress:
        result = models.run(directory, names=names, source=args.source, device=args.device, text=text, tokens=n,
                            trials=args.trials, seed=args.seed, stream=args.stream, progress=progress)
    on_cuda = str(result.records["device"].dropna().iloc[0]).startswith("cuda")
    where = torch.cuda.get_device_name() if on_cuda else \
        f"{cpu_model() or 'unknown CPU'} ({cpu_units() or 'no vector units known'}), {torch.get_num_threads()} threads"
    table = report_models.table(result.records, names)
    speed = ", ".join(f"{name} {report_models.audio_per_wall(result.records, name):.3f}" for name in names)
    lines = [f"models: {', '.join(names)}; source {args.source}, {'cuda' if on_cuda else 'cpu'} ({where})",
             f"        {n} speech tokens{'' if args.tokens else ' (scaled with the text)'}, {args.trials} trial(s), "
             f"order rotated per trial, prompt {text!r}", "",
             table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""), "",
             f"audio seconds per wall second: {speed} (1 is real time)", report_models.NOTE]
    print("\n".join(lines))
    if args.save:
        (directory / "models.txt").write_text("$ " + shlex.join(["ttsopt", *sys.argv[1:]]) + "\n"
                                              + "\n".join(lines) + "\n", encoding="utf-8")
        print(f"saved {directory / 'models.txt'} and the records in {directory}")
    return 0
