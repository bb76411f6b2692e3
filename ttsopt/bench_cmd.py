"""`ttsopt bench`: upstream-equivalent baseline and the fast path side by side, in one run.

Both sides load the same seeded weights, synthesize the same prompt with the same seeds and
token budgets, in interleaved order (A B, B A, ...) so machine drift hits both, and one table
prints what each achieved and the ratio. Fidelity is measured against the baseline on the
same inputs: token match under the same seed; where tokens match, waveform SNR; mel relative
error given the baseline's tokens and the same flow noise; teacher-forced T3 logit error.
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts" / "prompts.csv"
BEST = {"cpu": "fast-t3+cpu-int8-t3+fast-s3gen", "cuda": "fast-t3+fast-s3gen"}


def register(sub) -> None:
    p = sub.add_parser("bench", help="baseline vs the fast path, side by side, one ratio table")
    p.add_argument("--source", default="synthetic", help="hub, local:DIR, synthetic or tiny (default: synthetic)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--tokens", type=int, default=48, help="speech tokens per synthesis, both sides (default 48)")
    p.add_argument("--prompt", default=None, help="text to speak (default: medium-01 of data/prompts/prompts.csv)")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="trial t uses seed SEED + t on both sides")
    p.add_argument("--combo", default=None, help=f"variant spec (default per device: {BEST})")
    p.add_argument("--stream", action="store_true", help="also time streaming (first audio, RTF of the rest)")
    p.add_argument("--batch", type=int, default=0, help="also time N copies of the prompt in one T3 batch")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="also write DIR/bench.txt (what is printed) and DIR/bench.json (every trial, the environment)")
    p.set_defaults(func=run)


def default_prompt() -> str:
    with open(PROMPTS, newline="") as f:
        return next(r["text"] for r in csv.DictReader(f) if r["id"] == "medium-01")


def run(args: argparse.Namespace) -> int:
    import torch

    from . import memory, models, variants
    from .errors import UserError
    from .pipeline import Pipeline

    if args.tokens < 1 or args.trials < 1:
        raise UserError("--tokens and --trials must be at least 1")
    text = args.prompt or default_prompt()
    base_model = models.load(args.source, device=args.device, seed=0)
    fast_model = models.load(args.source, device=args.device, seed=0)
    combo = args.combo or BEST[base_model.device.type]
    base, fast = Pipeline(base_model), Pipeline(fast_model)
    applied = variants.apply(fast, combo)
    from .env import _cpu_model
    where = torch.cuda.get_device_name() if base_model.device.type == "cuda" else \
        f"{_cpu_model() or 'unknown CPU'}, {torch.get_num_threads()} threads"
    printed = []

    def say(line: str = "") -> None:
        printed.append(line)
        print(line, flush=True)

    say(f"bench: source {args.source}, device {base_model.device} ({where}), {args.tokens} tokens, "
        f"{args.trials} trial(s), prompt {text!r}\n       combo {combo}")

    for p in (base, fast):  # warm-up, excluded
        p.synthesize(text, seed=args.seed, n_tokens=min(4, args.tokens))
    runs = {"baseline": [], "fast": []}
    for t in range(args.trials):
        order = (("baseline", base), ("fast", fast)) if t % 2 == 0 else (("fast", fast), ("baseline", base))
        for name, p in order:
            with memory.track(p.device) as mem:
                r = p.synthesize(text, seed=args.seed + t, n_tokens=args.tokens)
            runs[name].append((r, mem.as_dict()))
            say(f"  trial {t} {name:8s} wall {r.wall_s:7.2f} s  T3 {r.tokens_per_s:6.2f} tok/s")

    fid = fidelity(base, fast, runs, text, args.seed)
    say()
    say(table(runs, fid))
    say(f"\nevidence: {applied.evidence_json(fast)}")
    if args.stream:
        say(stream_line(fast, text, args.seed, args.tokens))
    if args.batch:
        say(batch_line(fast, text, args.seed, args.tokens, args.batch))
    if args.save:
        save(Path(args.save), args, combo, text, runs, fid, applied.evidence(fast), printed)
    return 0


def save(directory: Path, args, combo: str, text: str, runs: dict, fid: dict, evidence: dict,
         printed: list[str]) -> None:
    """The printed table and every trial behind it, with the environment, for a report."""
    import json

    from . import env as env_mod
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.txt").write_text("\n".join(printed) + "\n", encoding="utf-8")
    trials = {name: [dict(seed=args.seed + t, wall_s=r.wall_s, rtf=r.rtf, audio_s=r.audio_s,
                          n_tokens=r.n_tokens, tokens_per_s=r.tokens_per_s, stages=r.stages, memory=m)
                     for t, (r, m) in enumerate(side)] for name, side in runs.items()}
    record = dict(command=" ".join(["python -m ttsopt bench", *_argv(args)]), combo=combo, prompt=text,
                  tokens=args.tokens, trials=trials, fidelity=fid, evidence=evidence,
                  environment=env_mod.capture(args.source))
    (directory / "bench.json").write_text(json.dumps(env_mod.redact(record), indent=1, default=str),
                                          encoding="utf-8")
    print(f"saved {directory / 'bench.txt'} and {directory / 'bench.json'}")


def _argv(args) -> list[str]:
    out = []
    for key in ("source", "device", "tokens", "trials", "seed", "combo", "prompt", "batch"):
        value = getattr(args, key)
        if value not in (None, 0, ""):
            out += [f"--{key}", repr(value) if key == "prompt" else str(value)]
    return out + (["--stream"] if args.stream else [])


def _median(xs):
    return float(np.median(xs))


def table(runs: dict, fid: dict) -> str:
    def stage(name, key):
        return _median([r.stages[key] for r, _ in runs[name]])

    def mem(name):
        m = runs[name][0][1]
        return m.get("torch_peak_allocated_mb", m.get("rss_delta_mb", float("nan")))

    mem_label = "peak torch allocated MB" if "torch_peak_allocated_mb" in runs["baseline"][0][1] \
        else "RSS growth during synthesis MB"
    rows = []
    for label, fn, higher_better in (
        ("T3 tokens/s", lambda n: _median([r.tokens_per_s for r, _ in runs[n]]), True),
        ("T3 decode s", lambda n: stage(n, "t3_decode"), False),
        ("S3Gen flow s", lambda n: stage(n, "s3gen_flow"), False),
        ("vocoder s", lambda n: stage(n, "vocoder"), False),
        ("S3Gen flow+vocoder s", lambda n: stage(n, "s3gen_flow") + stage(n, "vocoder"), False),
        ("end-to-end wall s", lambda n: _median([r.wall_s for r, _ in runs[n]]), False),
        ("end-to-end RTF", lambda n: _median([r.rtf for r, _ in runs[n]]), False),
        (mem_label, mem, False),
    ):
        b, f = fn("baseline"), fn("fast")
        speedup = (f / b if higher_better else b / f) if b and f else float("nan")
        rows.append(f"{label:32s} {b:12.3f} {f:12.3f} {speedup:9.2f}x")
    head = f"{'metric (median of trials)':32s} {'baseline':>12s} {'fast':>12s} {'gain':>10s}"
    lines = [head, "-" * len(head), *rows, "-" * len(head)]
    for k, v in fid.items():
        lines.append(f"{k:44s} {v}")
    return "\n".join(lines)


def fidelity(base, fast, runs: dict, text: str, seed: int) -> dict:
    """Fidelity of the fast side against the baseline on the same inputs."""
    import torch

    from .fast.t3_decode import FastT3
    from .pipeline import Sampling

    out = {}
    matches, snrs = [], []
    for (a, _), (b, _) in zip(runs["baseline"], runs["fast"]):
        n = max(a.raw_tokens.numel(), b.raw_tokens.numel())
        k = min(a.raw_tokens.numel(), b.raw_tokens.numel())
        matches.append(float((a.raw_tokens[:k] == b.raw_tokens[:k]).sum()) / n)
        if torch.equal(a.raw_tokens, b.raw_tokens) and len(a.wav) == len(b.wav):
            snrs.append(snr_db(a.wav, b.wav))
    out["token match rate (same seed)"] = f"{np.mean(matches):.4f} over {len(matches)} trial(s)"
    out["waveform SNR dB (trials with equal tokens)"] = (f"{np.median(snrs):.1f} over {len(snrs)}" if snrs
                                                        else "n/a (no trial had equal tokens)")
    tokens = runs["baseline"][0][0].tokens.to(base.device)
    with torch.inference_mode():
        conds_a, conds_b = base.conditioning(), fast.conditioning()
        torch.manual_seed(seed)
        mel_a = base.flow(tokens, conds_a).float()
        torch.manual_seed(seed)
        mel_b = fast.flow(tokens.to(fast.device), conds_b).float()
        out["mel rel. error (baseline tokens, same noise)"] = f"{float((mel_b - mel_a).norm() / mel_a.norm()):.4f}"
        s = Sampling()
        raw = runs["baseline"][0][0].raw_tokens[:-1].unsqueeze(0)
        la = _score(FastT3(base.model.t3, graphs=False), base, text, s, raw)
        lb = _score(FastT3(fast.model.t3, graphs=False), fast, text, s, raw)
        out["T3 teacher-forced logit rel. error"] = f"{float((lb - la).norm() / la.norm()):.2e}"
    return out


def _score(t3, pipeline, text, s, raw):
    state = t3.prefill(pipeline.conditioning().t3, pipeline.text_to_tokens(text), s)
    return t3.score(state, raw.to(pipeline.device)).float().cpu()


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((ref - test) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def stream_line(pipeline, text: str, seed: int, tokens: int) -> str:
    from .fast.stream import synthesize_stream
    out = synthesize_stream(pipeline, text, seed=seed, n_tokens=tokens)
    return (f"stream: first audio after {out.first_audio_s:.2f} s, {len(out.chunks)} chunks, "
            f"RTF of the rest {out.rest_rtf:.3f}, whole {out.wall_s:.2f} s for {out.audio_s:.2f} s of audio")


def batch_line(pipeline, text: str, seed: int, tokens: int, n: int) -> str:
    from .fast.batch import synthesize_batch
    out = synthesize_batch(pipeline, [text] * n, [seed + i for i in range(n)], tokens)
    return (f"batch of {n}: {out['audio_s']:.2f} s of audio in {out['wall_s']:.2f} s "
            f"(T3 {out['t3_s']:.2f} s) = {out['audio_s_per_wall_s']:.2f} audio s per wall s")
