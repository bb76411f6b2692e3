"""Instrumented synthesis: upstream `ChatterboxTTS.generate` (`ChatterboxTurboTTS.generate` for
the turbo model, `ChatterboxMultilingualTTS.generate` for the multilingual one), one timed stage
at a time.

The behaviour is upstream's — punctuation normalisation, CFG where the model has it, the same
logits processors in the same order (the multilingual model: its language token, its alignment
analyzer in the decode loop), dropping invalid tokens (Turbo: and appending its three silence
tokens), S3Gen flow then HiFT, the Perth watermark — split into the stages the measurement
contract names, so each can be timed and each can be replaced by a variant. The language a
multilingual synthesis speaks is `Pipeline.language` (ISO 639-1, default en).

The stages are a table, `Pipeline.stages`: text_to_tokens, conditioning, t3 (a runner object,
`engine.t3`), flow and vocode. A variant replaces a stage (`replace`) or wraps it (`wrap`: the
wrapper receives the stage it wraps, which stays reachable through `find`), and may wrap a
whole synthesis (`around`). `changes` lists what was done and by whom.

The caller passes the timer (`measure.timing.StageTimes`) that a synthesis fills, so how time
is measured is decided in one place.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from chatterbox.models.s3gen.const import S3GEN_SIL
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE, drop_invalid_tokens
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.mtl_tts import punc_norm as mtl_punc_norm
from chatterbox.tts import punc_norm
from chatterbox.tts_turbo import punc_norm as turbo_punc_norm

from ..core import params
from ..core.errors import UserError
from ..core.vocab import Stage
from ..measure.timing import StageTimes, wall_timer
from . import vocoder
from .s3gen import FlowStage
from .sources import Model, prepare_voice
from .t3 import alignment
from .t3.turbo import UpstreamTurboT3
from .t3.upstream import UpstreamT3

SAMPLE_RATE = 24_000
SAMPLES_PER_TOKEN = 960  # S3 tokens run at 25 Hz; S3Gen renders 40 ms of 24 kHz audio per token
STAGE_TABLE = ("text_to_tokens", "conditioning", "t3", "flow", "vocode")


class TextError(UserError):
    """Text the model cannot speak; the message says why."""


class VoiceError(UserError):
    """No voice to speak in: the weights carry none and no reference clip was given."""


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
    """`ChatterboxTTS.generate`'s defaults (tts.py, chatterbox-tts 0.1.7); `for_model` gives
    each model's own (Turbo: top-k 1000, top-p 0.95, no min-p, no CFG, no exaggeration;
    multilingual: repetition penalty 2.0)."""
    temperature: float = 0.8
    repetition_penalty: float = 1.2
    min_p: float = 0.05
    top_p: float = 1.0
    cfg_weight: float = 0.5
    exaggeration: float = 0.5
    max_new_tokens: int = 1000
    top_k: int = 0  # 0: no top-k (the original model has none)

    @classmethod
    def for_model(cls, name: str) -> Sampling:
        if name == "turbo":  # ChatterboxTurboTTS.generate's defaults
            return cls(temperature=0.8, repetition_penalty=1.2, min_p=0.0, top_p=0.95, cfg_weight=0.0,
                       exaggeration=0.0, top_k=1000)
        if name == "multilingual":  # ChatterboxMultilingualTTS.generate's defaults
            return cls(repetition_penalty=2.0)
        return cls()


@dataclass
class Synthesis:
    text: str
    wav: np.ndarray
    sr: int
    tokens: torch.Tensor       # speech tokens S3Gen rendered (1-D, cpu)
    raw_tokens: torch.Tensor   # what T3 emitted, stop token included (1-D, cpu)
    stages: dict[str, float]
    wall_s: float
    t3_forwards: int | None = None  # transformer forwards after prefill
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
        decode = self.stages.get(Stage.T3_DECODE, 0.0)
        return self.raw_tokens.numel() / decode if decode > 0 else float("nan")


class Wrapped:
    """A stage wrapped by a variant: a call runs AROUND(inner, *args, **kwargs)."""

    def __init__(self, inner, around, by: str):
        self.inner, self.around, self.by = inner, around, by
        functools.update_wrapper(self, around, assigned=("__doc__",), updated=())

    def __call__(self, *args, **kwargs):
        return self.around(self.inner, *args, **kwargs)


class Pipeline:
    """One model, one set of sampling parameters; `synthesize` runs and times every stage."""

    def __init__(self, model: Model, sampling: Sampling | None = None, watermark: bool = True):
        self.model = model
        self.sampling = sampling if sampling is not None else Sampling.for_model(model.name)
        self.watermark = watermark
        turbo = model.name == "turbo"
        text_step = {"turbo": self._turbo_text_to_tokens, "multilingual": self._mtl_text_to_tokens}
        self.stages = {"text_to_tokens": text_step.get(model.name, self._text_to_tokens),
                       "conditioning": self._conditioning,
                       "t3": (UpstreamTurboT3 if turbo else UpstreamT3)(model.t3),
                       "flow": FlowStage(model.s3gen), "vocode": self._vocode}
        self.language = "en"
        self.analyzer_log: dict = {}  # the multilingual baseline's alignment analyzer, as upstream runs it
        if model.name == "multilingual":
            self.stages["t3"].analyzer_factory = alignment.factory(self.analyzer_log)
        self.around: list = []          # wrappers of a whole synthesis, outermost first
        self.grad_mode = torch.inference_mode  # the no-grad variant swaps in torch.no_grad
        self.changes: list[tuple[str, str, str]] = []  # (stage, "replaced" | "wrapped", by)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def t3(self):
        return self.stages["t3"]

    # --- what variants call -------------------------------------------------------------------
    def replace(self, stage: str, new, by: str) -> None:
        self._check(stage)
        self.stages[stage] = new
        self.changes.append((stage, "replaced", by))

    def wrap(self, stage: str, around, by: str) -> None:
        """Later calls of STAGE run AROUND(inner, *args, **kwargs)."""
        self._check(stage)
        self.stages[stage] = Wrapped(self.stages[stage], around, by)
        self.changes.append((stage, "wrapped", by))

    def wrap_synthesis(self, around, by: str) -> None:
        """Later syntheses run AROUND(inner_synthesize, text, **keywords)."""
        self.around.append(around)
        self.changes.append(("synthesize", "wrapped", by))

    def find(self, stage: str, cls):
        """The object of type CLS in STAGE's chain of wrappers, or None."""
        current = self.stages[stage]
        while current is not None:
            if isinstance(current, cls):
                return current
            current = getattr(current, "inner", None)
        return None

    def _check(self, stage: str) -> None:
        if stage not in self.stages:
            raise KeyError(f"no stage {stage!r}: the stages are {', '.join(self.stages)}")

    # --- the stages upstream runs ---------------------------------------------------------------
    def text_to_tokens(self, text: str) -> torch.Tensor:
        return self.stages["text_to_tokens"](text)

    def conditioning(self, reference_wav=None):
        return self.stages["conditioning"](reference_wav)

    def flow(self, tokens: torch.Tensor, conds) -> torch.Tensor:
        return self.stages["flow"](tokens, conds)

    def vocode(self, mels: torch.Tensor) -> torch.Tensor:
        return self.stages["vocode"](mels)

    def _text_to_tokens(self, text: str) -> torch.Tensor:
        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        self._check_language()
        normalized = punc_norm(text)
        return self._framed(self.model.tts.tokenizer.text_to_tokens(normalized), normalized, text)

    def _mtl_text_to_tokens(self, text: str) -> torch.Tensor:
        """`ChatterboxMultilingualTTS.generate`'s text step: its punctuation rules, then the
        tokenizer's lower-casing, NFKD, per-language preparation and language token."""
        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        language = self._check_language()
        tokenizer = self.model.tts.tokenizer
        if language == "zh" and not tokenizer.cangjie_converter.word2cj:
            raise TextError("Chinese needs the tokenizer's Cangjie mapping (Cangjie5_TC.json beside the weights), "
                            "which this model's folder does not have; copy it from the model's repository")
        normalized = mtl_punc_norm(text)
        tokens = _upstream_quietly(tokenizer.text_to_tokens, normalized, language_id=language)
        return self._framed(tokens, normalized, text)

    def _check_language(self) -> str:
        try:
            return params.speaks(self.model.name, self.language)
        except UserError as exc:
            raise TextError(str(exc)) from None

    def _framed(self, tokens: torch.Tensor, normalized: str, text: str) -> torch.Tensor:
        """TOKENS checked (no unknown character, within T3's limit), with the CFG row where the
        sampling has one and the start/stop-of-text tokens, as upstream's `generate` frames them."""
        tts = self.model.tts
        unk = tts.tokenizer.tokenizer.token_to_id("[UNK]")
        if unk is not None and (tokens == unk).any():
            vocab = tts.tokenizer.tokenizer.get_vocab()
            prepare = getattr(tts.tokenizer, "preprocess_text", None)  # the multilingual one lower-cases first
            seen = prepare(normalized) if prepare else normalized
            unknown = sorted({c for c in seen if c != " " and c not in vocab})
            speaks = "this model speaks English" if self.model.name != "multilingual" else \
                f"language {self.language!r}"
            raise TextError(f"text has {len(unknown)} character(s) the tokenizer cannot read: "
                            f"{' '.join(repr(c) for c in unknown[:10])}; {speaks}")
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

    def _turbo_text_to_tokens(self, text: str) -> torch.Tensor:
        """`ChatterboxTurboTTS.generate`'s text step: its punctuation rules and the GPT-2 tokenizer,
        no start/stop tokens, no CFG row. Upstream truncates silently at the tokenizer's length
        limit; here over-long text is refused, so every accepted text is tokenized as upstream does."""
        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        self._check_language()
        tokenizer = self.model.tts.tokenizer
        # One text, within the limit: upstream's padding and truncation change nothing, so they are left out.
        ids = tokenizer(turbo_punc_norm(text), return_tensors="pt").input_ids
        if ids.size(-1) > tokenizer.model_max_length:
            raise TextError(f"text is {len(text)} characters = {ids.size(-1)} tokens; Turbo's tokenizer reads at "
                            f"most {tokenizer.model_max_length} — split it into sentences")
        return ids.to(self.device)

    def speech_tokens(self, raw: torch.Tensor) -> torch.Tensor:
        """What S3Gen renders of T3's output RAW (1-D): speech tokens only; Turbo appends three
        silence tokens, as upstream does, so its audio ends in silence rather than mid-token."""
        tokens = drop_invalid_tokens(raw)
        tokens = tokens[tokens < SPEECH_VOCAB_SIZE].to(self.device)
        if tokens.numel() == 0:
            raise SynthesisError("T3 stopped before emitting any speech token; "
                                 "try another seed or force a length (--tokens N)")
        if self.model.name == "turbo":
            silence = torch.full((3,), S3GEN_SIL, dtype=tokens.dtype, device=tokens.device)
            tokens = torch.cat([tokens, silence])
        return tokens

    def _conditioning(self, reference_wav=None):
        tts, s = self.model.tts, self.sampling
        if reference_wav is not None:
            prepare_voice(tts, reference_wav, exaggeration=s.exaggeration)
        elif tts.conds is None:
            raise VoiceError("this model has no built-in voice (its folder has no conds.pt): "
                             "give a reference clip (--reference)")
        if self.model.name == "turbo":  # Turbo's T3 has no emotion input: upstream leaves conds as they are
            return tts.conds
        if s.exaggeration != tts.conds.t3.emotion_adv[0, 0, 0]:
            c = tts.conds.t3
            tts.conds.t3 = T3Cond(speaker_emb=c.speaker_emb, cond_prompt_speech_tokens=c.cond_prompt_speech_tokens,
                                  emotion_adv=s.exaggeration * torch.ones(1, 1, 1)).to(device=self.device)
        return tts.conds

    def _vocode(self, mels: torch.Tensor) -> torch.Tensor:
        s3gen = self.model.s3gen
        mels = mels.to(dtype=vocoder.mel_dtype(s3gen.mel2wav))
        wav, _ = s3gen.hift_inference(mels, None)
        # Upstream's fade-in against reference spill-over, out of place: HiFT returns an inference
        # tensor, which cannot be updated in place outside inference mode (the no-grad variant).
        fade = s3gen.trim_fade
        return torch.cat([wav[:, :len(fade)] * fade, wav[:, len(fade):]], dim=1)

    # --- the whole thing ------------------------------------------------------------------------
    def synthesize(self, text: str, *, seed: int = 0, n_tokens: int | None = None, reference_wav=None,
                   sampling: Sampling | None = None, timer: StageTimes | None = None) -> Synthesis:
        """Synthesize TEXT; TIMER (default: a new `StageTimes`) is filled stage by stage. With a
        variant's wrapper around the synthesis, the wall time is the wrapper's: what it does
        before and after the inner synthesis (a cache clean-up, chunk joins) is part of the cost."""
        if n_tokens is not None and not 1 <= n_tokens <= self.sampling.max_new_tokens:
            raise ValueError(f"n_tokens must be between 1 and {self.sampling.max_new_tokens}, got {n_tokens}")
        call = self._synthesize_one
        for around in reversed(self.around):
            call = functools.partial(around, call)
        with wall_timer(self.device) as wall:
            out = call(text, seed=seed, n_tokens=n_tokens, reference_wav=reference_wav, sampling=sampling,
                       timer=timer)
        if self.around:
            out.wall_s = wall.seconds
        return out

    def _synthesize_one(self, text: str, *, seed: int = 0, n_tokens: int | None = None, reference_wav=None,
                        sampling: Sampling | None = None, timer: StageTimes | None = None) -> Synthesis:
        s = sampling or self.sampling
        times = timer if timer is not None else StageTimes(self.device)
        t3 = self.t3
        with self.grad_mode(), wall_timer(self.device) as wall:
            with times.stage(Stage.TEXT_TO_TOKENS):
                text_tokens = self.text_to_tokens(text)
            with times.stage(Stage.CONDITIONING):
                conds = self.conditioning(reference_wav)
            torch.manual_seed(seed)
            with times.stage(Stage.T3_PREFILL):
                state = t3.prefill(conds.t3, text_tokens, s)
            forwards = getattr(t3, "forwards", None)
            with times.stage(Stage.T3_DECODE):
                raw = t3.decode(state, s, n_tokens=n_tokens)
            with times.stage(Stage.S3GEN_FLOW):
                tokens = self.speech_tokens(raw[0])
                mels = self.flow(tokens, conds)
            with times.stage(Stage.VOCODER):
                wav = self.vocode(mels)
            with times.stage(Stage.WATERMARK):
                wav = wav.squeeze(0).detach().float().cpu().numpy()
                if self.watermark:
                    wav = self.model.tts.watermarker.apply_watermark(wav, sample_rate=SAMPLE_RATE)
        return Synthesis(text=text, wav=np.asarray(wav, dtype=np.float32), sr=SAMPLE_RATE, tokens=tokens.cpu(),
                         raw_tokens=raw[0].cpu(), stages=times.as_dict(), wall_s=wall.seconds,
                         t3_forwards=None if forwards is None else t3.forwards - forwards)


# The optional packages upstream's multilingual tokenizer uses per language; without one it
# skips that step and logs a warning. Here the warning is given once per language, as a warning.
_LANGUAGE_PACKAGES = {"ja": "pykakasi", "he": "dicta_onnx", "ru": "russian_text_stresser", "zh": "spacy_pkuseg"}
_WARNED: set[str] = set()


def _upstream_quietly(encode, text: str, language_id: str):
    import importlib.util
    import logging
    import warnings
    package = _LANGUAGE_PACKAGES.get(language_id)
    if package and language_id not in _WARNED:  # looked up once per language, not in every timed text step
        _WARNED.add(language_id)
        if importlib.util.find_spec(package) is None:
            warnings.warn(f"{package} is not installed: upstream's tokenizer skips its {language_id!r} text "
                          f"preparation (pip install {package.replace('_', '-')} for upstream's full behaviour)",
                          stacklevel=3)
    log = logging.getLogger("chatterbox.models.tokenizers.tokenizer")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return encode(text, language_id=language_id)
    finally:
        log.setLevel(level)
