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
    p.add_argument("--tokens", type=int, default=None,
                   help="speech tokens per synthesis, both sides (default: scaled with the text as the full "
                        "profile scales it, 1.2 per character: 126 for the default prompt)")
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

    from . import memory, models, profiles, variants
    from .errors import UserError
    from .pipeline import Pipeline

    if (args.tokens is not None and args.tokens < 1) or args.trials < 1:
        raise UserError("--tokens and --trials must be at least 1")
    text = args.prompt or default_prompt()
    tokens = args.tokens if args.tokens is not None else profiles.token_budget(profiles.get("full"), text)
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

    say(f"bench: source {args.source}, device {base_model.device} ({where}), {tokens} tokens"
        f"{'' if args.tokens else ' (scaled with the text)'}, "
        f"{args.trials} trial(s), prompt {text!r}\n       combo {combo}")

    for p in (base, fast):  # warm-up, excluded
        p.synthesize(text, seed=args.seed, n_tokens=min(4, tokens))
    runs = {"baseline": [], "fast": []}
    for t in range(args.trials):
        order = (("baseline", base), ("fast", fast)) if t % 2 == 0 else (("fast", fast), ("baseline", base))
        for name, p in order:
            with memory.track(p.device) as mem:
                r = p.synthesize(text, seed=args.seed + t, n_tokens=tokens)
            runs[name].append((r, mem.as_dict()))
            say(f"  trial {t} {name:8s} wall {r.wall_s:7.2f} s  T3 {r.tokens_per_s:6.2f} tok/s")

    fid = fidelity(base, fast, runs, text, args.seed)
    floor = memory_floor(base, fast, runs, text, tokens)
    say()
    weights_mb = {name: model_mb(p) for name, p in (("baseline", base), ("fast", fast))}
    say(table(runs, fid, weights_mb))
    say(floor_lines(floor))
    say(f"\nevidence: {applied.evidence_json(fast)}")
    extra = {}
    if args.stream:
        line, extra["stream"] = stream_line(fast, text, args.seed, tokens)
        say(line)
    if args.batch:
        line, extra["batch"] = batch_line(fast, text, args.seed, tokens, args.batch)
        say(line)
    if args.save:
        save(Path(args.save), args, combo, text, runs, fid, applied.evidence(fast), printed,
             dict(memory_floor=floor, model_weights_mb=weights_mb, **extra), tokens)
    return 0


def save(directory: Path, args, combo: str, text: str, runs: dict, fid: dict, evidence: dict,
         printed: list[str], more: dict, tokens: int) -> None:
    """The printed table and every trial behind it, with the environment, for a report."""
    import json

    from . import env as env_mod
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.txt").write_text("\n".join(printed) + "\n", encoding="utf-8")
    trials = {name: [dict(seed=args.seed + t, wall_s=r.wall_s, rtf=r.rtf, audio_s=r.audio_s,
                          n_tokens=r.n_tokens, tokens_per_s=r.tokens_per_s, stages=r.stages, memory=m)
                     for t, (r, m) in enumerate(side)] for name, side in runs.items()}
    record = dict(command=" ".join(["python -m ttsopt bench", *_argv(args)]), combo=combo, prompt=text,
                  tokens=tokens, trials=trials, fidelity=fid, **more, evidence=evidence,
                  environment=env_mod.capture(args.source))
    (directory / "bench.json").write_text(json.dumps(env_mod.redact(record), indent=1, default=str),
                                          encoding="utf-8")
    import matplotlib
    matplotlib.use("Agg")
    from .plots import bench_figure
    fig = bench_figure(trials, more.get("memory_floor"))
    fig.savefig(directory / "bench.png", dpi=110)
    print(f"saved {directory / 'bench.txt'}, {directory / 'bench.json'} and {directory / 'bench.png'}")


def _argv(args) -> list[str]:
    out = []
    for key in ("source", "device", "tokens", "trials", "seed", "combo", "prompt", "batch"):
        value = getattr(args, key)
        if value not in (None, 0, ""):
            out += [f"--{key}", repr(value) if key == "prompt" else str(value)]
    return out + (["--stream"] if args.stream else [])


def _median(xs):
    return float(np.median(xs))


def table(runs: dict, fid: dict, weights_mb: dict) -> str:
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
        ("model weights MB (T3, S3Gen, VE)", lambda n: weights_mb[n], False),
        (mem_label, mem, None),
    ):
        b, f = fn("baseline"), fn("fast")
        if higher_better is None:  # growth of the process's resident set: a ratio of it means nothing
            rows.append(f"{label:32s} {b:12.3f} {f:12.3f} {'—':>10s}")
            continue
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


def model_mb(pipeline) -> float:
    """Bytes of every weight the pipeline's model holds, quantized ones in their own format."""
    from .fast.traffic import param_bytes
    m = pipeline.model
    return sum(param_bytes(part) for part in (m.t3, m.s3gen, m.tts.ve)) / 2**20


def memory_floor(base, fast, runs: dict, text: str, n_tokens: int) -> dict:
    """Bytes each side's T3 step must read, this device's read bandwidth, and what follows."""
    import torch

    from .fast import traffic
    from .fast.t3_decode import FastT3
    from .pipeline import Sampling

    with torch.inference_mode():  # prefill length: conditioning + text + start-of-speech
        t3 = FastT3(base.model.t3, graphs=False)
        prefill_len = t3.prefill(base.conditioning().t3, base.text_to_tokens(text), Sampling()).length
    bandwidth = traffic.read_bandwidth(base.device)
    out = {"prefill_positions": prefill_len, "read_bandwidth_gb_s": bandwidth / 1e9,
           "bandwidth_probe": f"best of 5 sums over a 256 MiB float32 tensor on {base.device}"}
    for name, p in (("baseline", base), ("fast", fast)):
        step_s = 1 / _median([r.tokens_per_s for r, _ in runs[name]])
        nbytes = traffic.step_bytes(p.model.t3, prefill_len, n_tokens)
        out[name] = {"step_mb": nbytes / 2**20, "weight_mb": traffic.weight_bytes(p.model.t3) / 2**20,
                     "step_ms": step_s * 1e3, "achieved_gb_s": nbytes / step_s / 1e9,
                     "floor_ms": nbytes / bandwidth * 1e3}
    out["t3_gain_ceiling"] = out["baseline"]["step_ms"] / out["fast"]["floor_ms"]
    return out


def floor_lines(f: dict) -> str:
    b, x = f["baseline"], f["fast"]
    return "\n".join([
        "",
        f"{'T3 step memory floor':32s} {'baseline':>12s} {'fast':>12s}",
        f"{'  weights read per step MB':32s} {b['weight_mb']:12.1f} {x['weight_mb']:12.1f}",
        f"{'  + KV cache at mean length MB':32s} {b['step_mb'] - b['weight_mb']:12.1f} {x['step_mb'] - x['weight_mb']:12.1f}",
        f"{'  measured ms per token':32s} {b['step_ms']:12.2f} {x['step_ms']:12.2f}",
        f"{'  achieved read rate GB/s':32s} {b['achieved_gb_s']:12.1f} {x['achieved_gb_s']:12.1f}",
        f"{'  floor at device bandwidth ms':32s} {b['floor_ms']:12.2f} {x['floor_ms']:12.2f}",
        f"device read bandwidth {f['read_bandwidth_gb_s']:.1f} GB/s ({f['bandwidth_probe']}); "
        f"{f['prefill_positions']} positions before the first speech token",
        f"=> reading these bytes, no fast step can beat the measured baseline by more than "
        f"{f['t3_gain_ceiling']:.2f}x on this device",
    ])


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((ref - test) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def stream_line(pipeline, text: str, seed: int, tokens: int) -> tuple[str, dict]:
    from .fast.stream import synthesize_stream
    out = synthesize_stream(pipeline, text, seed=seed, n_tokens=tokens)
    record = dict(first_audio_s=out.first_audio_s, chunks=len(out.chunks), rest_rtf=out.rest_rtf,
                  wall_s=out.wall_s, audio_s=out.audio_s)
    return (f"stream: first audio after {out.first_audio_s:.2f} s, {len(out.chunks)} chunks, "
            f"RTF of the rest {out.rest_rtf:.3f}, whole {out.wall_s:.2f} s for {out.audio_s:.2f} s of audio"), record


def batch_line(pipeline, text: str, seed: int, tokens: int, n: int) -> tuple[str, dict]:
    from .fast.batch import synthesize_batch
    out = synthesize_batch(pipeline, [text] * n, [seed + i for i in range(n)], tokens)
    return (f"batch of {n}: {out['audio_s']:.2f} s of audio in {out['wall_s']:.2f} s "
            f"(T3 {out['t3_s']:.2f} s) = {out['audio_s_per_wall_s']:.2f} audio s per wall s"), \
        {k: v for k, v in out.items() if isinstance(v, (int, float, str))} | {"prompts": n}
