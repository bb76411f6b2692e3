"""Instrumented synthesis: upstream `ChatterboxTTS.generate`, one timed stage at a time.

The behaviour is upstream's — punctuation normalisation, CFG, the same logits processors in
the same order, dropping invalid tokens, S3Gen flow then HiFT, the Perth watermark — split
into the stages the measurement contract names, so each can be timed and each can be
replaced by a variant (`Pipeline.t3`, `Pipeline.flow`, `Pipeline.vocode`).

Length forcing (`n_tokens=N`): tokens at or above the S3 vocabulary (start/stop of speech
and the unused ids) are masked until exactly N speech tokens exist, then speech stops.
Random weights never stop by themselves, and runs that must do identical work (baseline
against variant) need the same N.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE, drop_invalid_tokens
from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.tts import punc_norm

from .errors import UserError
from .models import Model, prepare_voice
from .timing import StageTimes, wall_timer

STAGES = ("text_to_tokens", "conditioning", "t3_prefill", "t3_decode", "s3gen_flow", "vocoder", "watermark")
SAMPLE_RATE = 24_000
SAMPLES_PER_TOKEN = 960  # S3 tokens run at 25 Hz; S3Gen renders 40 ms of 24 kHz audio per token


class TextError(UserError):
    """Text the model cannot speak; the message says why."""


class SynthesisError(RuntimeError):
    """A synthesis that produced nothing usable."""


def rtf(wall_s: float, audio_s: float) -> float:
    """Real-time factor: synthesis wall time / duration of the audio produced. Below 1 is faster
    than real time. The only place in ttsopt where RTF is computed."""
    if audio_s <= 0:
        raise ValueError(f"RTF needs audio: got {audio_s} s of audio")
    return wall_s / audio_s


@dataclass(frozen=True)
class Sampling:
    """`ChatterboxTTS.generate`'s defaults (tts.py, chatterbox-tts 0.1.7)."""
    temperature: float = 0.8
    repetition_penalty: float = 1.2
    min_p: float = 0.05
    top_p: float = 1.0
    cfg_weight: float = 0.5
    exaggeration: float = 0.5
    max_new_tokens: int = 1000


@dataclass
class Synthesis:
    text: str
    wav: np.ndarray
    sr: int
    tokens: torch.Tensor       # speech tokens S3Gen rendered (1-D, cpu)
    raw_tokens: torch.Tensor   # what T3 emitted, stop token included (1-D, cpu)
    stages: dict[str, float]
    wall_s: float
    forced: bool
    extra: dict = field(default_factory=dict)  # what a variant wants recorded beside the stages

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.numel())

    @property
    def audio_s(self) -> float:
        return len(self.wav) / self.sr

    @property
    def rtf(self) -> float:
        return rtf(self.wall_s, self.audio_s)

    @property
    def tokens_per_s(self) -> float:
        """T3 decode throughput: tokens emitted per second of decode stage."""
        decode = self.stages.get("t3_decode", 0.0)
        return self.raw_tokens.numel() / decode if decode > 0 else float("nan")


@dataclass
class T3State:
    """What prefill hands to decode."""
    output: object          # the model output holding the first step's logits
    past: object            # the KV cache
    bos: torch.Tensor
    len_cond: int
    text_len: int
    cfg_weight: float


class UpstreamT3:
    """Upstream `T3.inference`, split into prefill and decode; same tokens for the same seed.

    Kept faithful on purpose, costs included: the backend is rebuilt per call and every step
    asks for attention maps and all hidden states, as upstream does.
    """
    name = "upstream"

    def __init__(self, t3):
        self.t3 = t3
        self.analyzer_factory = None  # set by the alignment-analyzer variant
        self.analyzer = None

    def prefill(self, t3_cond: T3Cond, text_tokens: torch.Tensor, s: Sampling) -> T3State:
        t3 = self.t3
        text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=t3.device)
        start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, len_cond = t3.prepare_input_embeds(
            t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=s.cfg_weight)
        self.analyzer = None
        if self.analyzer_factory is not None:
            self.analyzer = self.analyzer_factory(t3, len_cond, text_tokens.size(-1))
        self.backend = T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb,
                                            speech_head=t3.speech_head,
                                            alignment_stream_analyzer=self.analyzer)
        bos = torch.tensor([[t3.hp.start_speech_token]], dtype=torch.long, device=embeds.device)
        bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
        inputs = torch.cat([embeds, torch.cat([bos_embed, bos_embed])], dim=1)
        output = self.backend(inputs_embeds=inputs, past_key_values=None, use_cache=True,
                              output_attentions=True, output_hidden_states=True, return_dict=True)
        return T3State(output, output.past_key_values, bos, len_cond, text_tokens.size(-1), s.cfg_weight)

    def decode(self, state: T3State, s: Sampling, n_tokens: int | None = None) -> torch.Tensor:
        t3 = self.t3
        stop = t3.hp.stop_speech_token
        rep = RepetitionPenaltyLogitsProcessor(penalty=float(s.repetition_penalty))
        min_p, top_p = MinPLogitsWarper(min_p=s.min_p), TopPLogitsWarper(top_p=s.top_p)
        generated = state.bos.clone()
        predicted = []
        output, past = state.output, state.past
        steps = s.max_new_tokens if n_tokens is None else n_tokens + 1
        for i in range(steps):
            if n_tokens is not None and i == n_tokens:
                predicted.append(torch.full_like(generated[:, :1], stop))
                break
            logits_step = output.logits[:, -1, :]
            cond, uncond = logits_step[0:1, :], logits_step[1:2, :]
            cfg = torch.as_tensor(s.cfg_weight, device=cond.device, dtype=cond.dtype)
            logits = cond + cfg * (cond - uncond)
            if self.analyzer is not None:
                logits = self.analyzer.step(logits, next_token=generated[0, -1].item())
            if n_tokens is not None:
                logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
            ids = generated[:1, ...]
            logits = rep(ids, logits)
            if s.temperature != 1.0:
                logits = logits / s.temperature
            logits = top_p(ids, min_p(ids, logits))
            next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
            predicted.append(next_token)
            generated = torch.cat([generated, next_token], dim=1)
            if next_token.view(-1) == stop:
                break
            embed = t3.speech_emb(next_token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
            output = self.backend(inputs_embeds=torch.cat([embed, embed]), past_key_values=past,
                                  output_attentions=True, output_hidden_states=True, return_dict=True)
            past = output.past_key_values
        return torch.cat(predicted, dim=1)


    def score(self, state: T3State, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the CFG-combined logits (n, V) T3 gives at each step when fed TOKENS,
        before any sampling processor. Fidelity compares these across variants."""
        t3 = self.t3
        output, past = state.output, state.past
        steps = []
        for i, token in enumerate(tokens.view(-1).tolist()):
            logits_step = output.logits[:, -1, :].float()
            steps.append(logits_step[0] + state.cfg_weight * (logits_step[0] - logits_step[1]))
            if i == tokens.numel() - 1:
                break
            tok = torch.tensor([[token]], dtype=torch.long, device=state.bos.device)
            embed = t3.speech_emb(tok) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
            output = self.backend(inputs_embeds=torch.cat([embed, embed]), past_key_values=past,
                                  output_attentions=True, output_hidden_states=True, return_dict=True)
            past = output.past_key_values
        return torch.stack(steps)


class Pipeline:
    """One model, one set of sampling parameters; `synthesize` runs and times every stage."""

    def __init__(self, model: Model, sampling: Sampling = Sampling(), watermark: bool = True):
        self.model = model
        self.sampling = sampling
        self.watermark = watermark
        self.t3 = UpstreamT3(model.t3)
        self.grad_mode = torch.inference_mode  # the no-grad variant swaps in torch.no_grad

    @property
    def device(self) -> torch.device:
        return self.model.device

    # --- stages (variants replace these) -------------------------------------------------
    def text_to_tokens(self, text: str) -> torch.Tensor:
        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        tts = self.model.tts
        normalized = punc_norm(text)
        tokens = tts.tokenizer.text_to_tokens(normalized)
        unk = tts.tokenizer.tokenizer.token_to_id("[UNK]")
        if unk is not None and (tokens == unk).any():
            vocab = tts.tokenizer.tokenizer.get_vocab()
            unknown = sorted({c for c in normalized if c != " " and c not in vocab})
            raise TextError(f"text has {len(unknown)} character(s) the tokenizer cannot read: "
                            f"{' '.join(repr(c) for c in unknown[:10])}; this model speaks English")
        limit = self.model.t3.hp.max_text_tokens
        if tokens.size(-1) > limit:
            raise TextError(f"text is {len(text)} characters = {tokens.size(-1)} tokens; T3 reads at most "
                            f"{limit} — split it into sentences (the token-budget variant chunks long text)")
        tokens = tokens.to(self.device)
        if self.sampling.cfg_weight > 0.0:
            tokens = torch.cat([tokens, tokens], dim=0)  # a second row for the unconditional pass
        hp = self.model.t3.hp
        tokens = F.pad(tokens, (1, 0), value=hp.start_text_token)
        return F.pad(tokens, (0, 1), value=hp.stop_text_token)

    def conditioning(self, reference_wav=None):
        tts, s = self.model.tts, self.sampling
        if reference_wav is not None:
            prepare_voice(tts, reference_wav, exaggeration=s.exaggeration)
        elif tts.conds is None:
            raise SynthesisError("this model has no built-in voice (conds.pt): give a reference clip")
        if s.exaggeration != tts.conds.t3.emotion_adv[0, 0, 0]:
            c = tts.conds.t3
            tts.conds.t3 = T3Cond(speaker_emb=c.speaker_emb, cond_prompt_speech_tokens=c.cond_prompt_speech_tokens,
                                  emotion_adv=s.exaggeration * torch.ones(1, 1, 1)).to(device=self.device)
        return tts.conds

    def flow(self, tokens: torch.Tensor, conds) -> torch.Tensor:
        return self.model.s3gen.flow_inference(tokens, ref_dict=conds.gen, finalize=True)

    def vocode(self, mels: torch.Tensor) -> torch.Tensor:
        s3gen = self.model.s3gen
        mels = mels.to(dtype=next(s3gen.mel2wav.parameters()).dtype)
        wav, _ = s3gen.hift_inference(mels, None)
        # Upstream's fade-in against reference spill-over, out of place: HiFT returns an inference
        # tensor, which cannot be updated in place outside inference mode (the no-grad variant).
        fade = s3gen.trim_fade
        return torch.cat([wav[:, :len(fade)] * fade, wav[:, len(fade):]], dim=1)

    # --- the whole thing ----------------------------------------------------------------
    def synthesize(self, text: str, *, seed: int = 0, n_tokens: int | None = None,
                   reference_wav=None, sampling: Sampling | None = None) -> Synthesis:
        if n_tokens is not None and not 1 <= n_tokens <= self.sampling.max_new_tokens:
            raise ValueError(f"n_tokens must be between 1 and {self.sampling.max_new_tokens}, got {n_tokens}")
        s = sampling or self.sampling
        times = StageTimes(self.device)
        with self.grad_mode(), wall_timer(self.device) as wall:
            with times.stage("text_to_tokens"):
                text_tokens = self.text_to_tokens(text)
            with times.stage("conditioning"):
                conds = self.conditioning(reference_wav)
            torch.manual_seed(seed)
            with times.stage("t3_prefill"):
                state = self.t3.prefill(conds.t3, text_tokens, s)
            with times.stage("t3_decode"):
                raw = self.t3.decode(state, s, n_tokens=n_tokens)
            with times.stage("s3gen_flow"):
                tokens = drop_invalid_tokens(raw[0])
                tokens = tokens[tokens < SPEECH_VOCAB_SIZE].to(self.device)
                if tokens.numel() == 0:
                    raise SynthesisError("T3 stopped before emitting any speech token; "
                                         "try another seed or force a length (--tokens N)")
                mels = self.flow(tokens, conds)
            with times.stage("vocoder"):
                wav = self.vocode(mels)
            with times.stage("watermark"):
                wav = wav.squeeze(0).detach().float().cpu().numpy()
                if self.watermark:
                    wav = self.model.tts.watermarker.apply_watermark(wav, sample_rate=SAMPLE_RATE)
        return Synthesis(text=text, wav=np.asarray(wav, dtype=np.float32), sr=SAMPLE_RATE,
                         tokens=tokens.cpu(), raw_tokens=raw[0].cpu(), stages=times.as_dict(),
                         wall_s=wall.seconds, forced=n_tokens is not None)
