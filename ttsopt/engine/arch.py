"""Model architectures: upstream chatterbox-tts constructors, per model, at full or tiny size.

Three models of the Chatterbox family are built: `original` (`ChatterboxTTS`: Llama T3, a
10-step CFM flow run with classifier-free guidance), `multilingual`
(`ChatterboxMultilingualTTS`: the same architecture with a 23-language text vocabulary) and
`turbo` (`ChatterboxTurboTTS`: GPT-2-medium T3, a 2-step mean-flow decoder, no guidance).
`full` is exactly what each class's `from_local` builds. `tiny` runs the very same
constructors with small dimensions, so tests exercise upstream code paths in seconds.
S3Gen hard-codes its sub-module sizes inside `__init__`, so tiny swaps the constructors
that `S3Token2Mel.__init__` looks up in its module for ones that override the size
arguments, only for the duration of the build.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from chatterbox.models.s3gen import S3Gen
from chatterbox.models.s3gen import s3gen as s3gen_module
from chatterbox.models.t3 import T3
from chatterbox.models.t3.llama_configs import GPT2_MEDIUM_CONFIG, LLAMA_520M_CONFIG_DICT, LLAMA_CONFIGS
from chatterbox.models.t3.modules import cond_enc as cond_enc_module
from chatterbox.models.t3.modules.t3_config import T3Config
from chatterbox.models.voice_encoder import VoiceEncoder
from chatterbox.models.voice_encoder.config import VoiceEncConfig
from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

ARCHES = ("full", "tiny")
MODELS = ("original", "turbo", "multilingual")
TURBO_TEXT_VOCAB = 50276  # the GPT-2 vocabulary Turbo's T3 embeds (tts_turbo.from_local)

TINY_LLAMA = "ttsopt-tiny"
LLAMA_CONFIGS[TINY_LLAMA] = {
    **LLAMA_520M_CONFIG_DICT,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 14,  # upstream's alignment analyzer reads layers 9, 12 and 13
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 16,
}

TINY_GPT2 = "ttsopt-tiny-gpt2"
# Positions as GPT2_medium's: upstream decodes up to 1000 tokens after a prefix of about 400.
LLAMA_CONFIGS[TINY_GPT2] = {**GPT2_MEDIUM_CONFIG, "n_embd": 64, "hidden_size": 64, "n_head": 4, "n_layer": 2}

# Keyword overrides per constructor that S3Token2Mel / S3Token2Wav call by name.
_TINY_S3GEN = {
    # The encoder's look-ahead and upsampling layers are fixed at 512 channels, so its width stays.
    "UpsampleConformerEncoder": dict(attention_heads=2, linear_units=128, num_blocks=1),
    "ConditionalDecoder": dict(channels=[32], attention_head_dim=16, n_blocks=1,
                               num_mid_blocks=1, num_heads=2),
    "CAMPPlus": dict(growth_rate=8, bn_size=2, init_channels=16),
    "HiFTGenerator": dict(base_channels=32),
    "ConvRNNF0Predictor": dict(cond_channels=32),
}
# The tokenizer's rotary table is fixed at 64 per head, so tiny keeps one 64-wide head.
_TINY_TOKENIZER = ModelConfig(n_audio_state=64, n_audio_head=1, n_audio_layer=1)
_TINY_PERCEIVER = dict(pre_attention_query_size=64, embedding_dim=64)


class TinyVoiceEncConfig(VoiceEncConfig):
    ve_hidden_size = 32


def _with_overrides(cls, overrides):
    @functools.wraps(cls)
    def build(*args, **kwargs):
        return cls(*args, **{**kwargs, **overrides})
    return build


@contextlib.contextmanager
def _swapped(module, name, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def _tiny_constructors():
    with contextlib.ExitStack() as stack:
        for name, overrides in _TINY_S3GEN.items():
            cls = getattr(s3gen_module, name)
            stack.enter_context(_swapped(s3gen_module, name, _with_overrides(cls, overrides)))
        # S3Tokenizer.__init__ calls S3TokenizerV2.__init__(name) with the default config.
        init = S3TokenizerV2.__init__
        stack.enter_context(_swapped(init, "__defaults__", (_TINY_TOKENIZER,)))
        stack.enter_context(_swapped(cond_enc_module, "Perceiver",
                                     _with_overrides(cond_enc_module.Perceiver, _TINY_PERCEIVER)))
        yield


def t3_config(arch: str, model: str = "original") -> T3Config:
    """Upstream's T3 settings for MODEL; Turbo's are the ones `ChatterboxTurboTTS.from_local`
    sets by hand (GPT-2 backbone, no learned positions of its own, no perceiver, no emotion)."""
    if model == "turbo":
        hp = T3Config(text_tokens_dict_size=TURBO_TEXT_VOCAB)
        hp.llama_config_name = TINY_GPT2 if arch == "tiny" else "GPT2_medium"
        hp.speech_tokens_dict_size = 6563
        hp.input_pos_emb = None
        hp.speech_cond_prompt_len = 375
        hp.use_perceiver_resampler = False
        hp.emotion_adv = False
        return hp
    hp = T3Config.multilingual() if model == "multilingual" else T3Config.english_only()
    if arch == "tiny":
        hp.llama_config_name = TINY_LLAMA
    return hp


def check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: expected one of {', '.join(MODELS)}")
    return model


# What random initialisation goes through: torch.nn.init's random fills and, for transformers'
# `_init_weights`, the in-place tensor methods themselves. Constant fills stay: they are cheap,
# and buffers computed at construction may use them.
_INIT_FUNCTIONS = ("normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_",
                   "xavier_normal_", "xavier_uniform_", "orthogonal_", "sparse_")
_INIT_METHODS = ("normal_", "uniform_")


@contextlib.contextmanager
def _skip_init():
    """Parameters keep whatever memory they were allocated with, never written: only for modules
    whose every parameter is about to be replaced by a strict load (`sources` assigns the
    checkpoint's own tensors). Random initialisation is most of building the full model on a CPU
    (`normal_` over 800M values)."""
    keep = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    with contextlib.ExitStack() as stack:
        for name in _INIT_FUNCTIONS:
            stack.enter_context(_swapped(torch.nn.init, name, keep))
        for name in _INIT_METHODS:
            stack.enter_context(_swapped(torch.Tensor, name, keep))
        yield


def build(arch: str, seed: int | None = None, init: bool = True,
          model: str = "original") -> tuple[T3, S3Gen, VoiceEncoder]:
    """Build MODEL's (T3, S3Gen, VoiceEncoder); with a seed the random initial weights are
    reproducible. `init=False` skips random initialisation, for weights about to be loaded over it."""
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHES)}")
    meanflow = check_model(model) == "turbo"
    if seed is not None:
        torch.manual_seed(seed)
    with contextlib.ExitStack() as stack:
        if not init:
            stack.enter_context(_skip_init())
        if arch == "full":
            return T3(t3_config(arch, model)), S3Gen(meanflow=meanflow), VoiceEncoder()
        with _tiny_constructors():
            t3 = T3(t3_config("tiny", model))
            s3gen = S3Gen(meanflow=meanflow)
        return t3, s3gen, VoiceEncoder(TinyVoiceEncConfig())
