"""batch: N prompts decoded by T3 as one batch of 2N rows (each prompt's cond/uncond pair).

Same tokens as one prompt at a time, by construction of the random streams: each prompt owns
a CPU/CUDA generator seeded with its seed and draws from it only while it is still running.
A generator seeded with s produces the stream the global RNG produces after
`torch.manual_seed(s)`, which is what `Pipeline.synthesize(seed=s)` samples from; a row's
generator therefore ends T3 in the state the global RNG would, and S3Gen's noise for that
prompt is drawn from it, so the audio matches too. Prompts of different lengths share the
cache with per-row slots and a mask (`llama_step`, which on a CPU steps rows of one length
through its int-slot TorchScript layers instead); prefill runs per prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

from ..core.errors import UserError
from ..measure.timing import Stopwatch
from .pipeline import SAMPLE_RATE, Synthesis
from .t3 import llama_step, sampling
from .t3.fast import FastT3


@dataclass
class BatchResult:
    results: list[Synthesis]
    wall_s: float    # the whole batch, S3Gen included
    t3_s: float      # conditioning, prefills and the batched decode

    @property
    def audio_s(self) -> float:
        return sum(r.audio_s for r in self.results)

    @property
    def audio_s_per_wall_s(self) -> float:
        return self.audio_s / self.wall_s


def synthesize_batch(pipeline, texts: list[str], seeds: list[int], n_tokens=None) -> BatchResult:
    """Synthesize TEXTS with one T3 batch. N_TOKENS: None (natural stop), an int for all, or
    one per text."""
    if len(texts) != len(seeds):
        raise ValueError(f"{len(texts)} texts but {len(seeds)} seeds")
    if getattr(pipeline.t3, "analyzer_factory", None) is not None:
        raise UserError(f"the {pipeline.model.name} model's T3 runs upstream's alignment analyzer, which follows one "
                        "synthesis at a time: a T3 batch would speak without it; synthesize one at a time")
    ns = list(n_tokens) if isinstance(n_tokens, (list, tuple)) else [n_tokens] * len(texts)
    s = pipeline.sampling
    clock = Stopwatch(pipeline.device)
    with torch.inference_mode():
        conds = pipeline.conditioning()
        raws, generators = decode_batch(pipeline.model.t3, [pipeline.text_to_tokens(t) for t in texts],
                                        conds.t3, s, seeds, ns)
        t3_s = clock.elapsed()
        results = []
        for text, raw, gen in zip(texts, raws, generators):
            _restore_global_rng(gen)
            tokens = raw[raw < SPEECH_VOCAB_SIZE].to(pipeline.device)
            wav = pipeline.vocode(pipeline.flow(tokens, conds)).squeeze(0).float().cpu().numpy()
            if pipeline.watermark:
                wav = pipeline.model.tts.watermarker.apply_watermark(wav, sample_rate=SAMPLE_RATE)
            results.append(Synthesis(text=text, wav=np.asarray(wav, dtype=np.float32), sr=SAMPLE_RATE,
                                     tokens=tokens.cpu(), raw_tokens=raw.cpu(), stages={}, wall_s=float("nan")))
    return BatchResult(results, clock.elapsed(), t3_s)


def _restore_global_rng(gen: torch.Generator) -> None:
    if gen.device.type == "cuda":
        torch.cuda.set_rng_state(gen.get_state(), gen.device)
    else:
        torch.set_rng_state(gen.get_state())


def decode_batch(t3, text_tokens: list[torch.Tensor], t3_cond, s, seeds, ns):
    """Raw token rows (1-D, stop included as in `FastT3.decode`) and each prompt's generator."""
    one = FastT3(t3, graphs=False)
    states = [one.prefill(t3_cond, tt, s) for tt in text_tokens]
    N, dev = len(states), t3.device
    steps = max(s.max_new_tokens if n is None else n for n in ns)
    cache = llama_step.StaticKV(t3.tfmr.config, 2 * N, max(st.length for st in states) + steps + 1,
                                states[0].cache.k.dtype, dev)
    for b, st in enumerate(states):
        cache.k[:, 2 * b:2 * b + 2, :, :st.length] = st.cache.k[:, :, :, :st.length]
        cache.v[:, 2 * b:2 * b + 2, :, :st.length] = st.cache.v[:, :, :, :st.length]
    slots = torch.tensor([st.length for st in states], device=dev).repeat_interleave(2)
    logits = torch.cat([st.logits for st in states])
    seen = torch.zeros(N, logits.size(-1), dtype=torch.bool, device=dev)
    seen[:, t3.hp.start_speech_token] = True
    gens = [torch.Generator(device=dev).manual_seed(seed) for seed in seeds]
    stop = t3.hp.stop_speech_token
    out = [[] for _ in range(N)]
    running = list(range(N))
    forced = torch.tensor([n is not None for n in ns], device=dev)
    for i in range(steps):
        warped = sampling.warp(sampling.cfg_combine(logits, s.cfg_weight), seen, s, forced)
        probs = torch.softmax(warped[running], dim=-1)
        token = torch.full((N, 1), stop, dtype=torch.long, device=dev)
        token[running] = sampling.draw(probs, [gens[b] for b in running])
        seen.scatter_(1, token, True)
        for b in list(running):
            t = int(token[b])
            out[b].append(t)
            limit = s.max_new_tokens if ns[b] is None else ns[b]
            if (ns[b] is None and t == stop) or len(out[b]) == limit:
                if ns[b] is not None:
                    out[b].append(stop)
                running.remove(b)
        if not running:
            break
        embed = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
        h = llama_step.forward(t3.tfmr, embed.repeat_interleave(2, dim=0), cache, slots)
        logits = t3.speech_head(h)[:, -1]
        slots += 1
    return [torch.tensor(o, dtype=torch.long) for o in out], gens
