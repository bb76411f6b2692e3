"""The rules a parameter's value must follow, written once for the command line and the notebooks.

argparse hands the command line over as strings and papermill hands `-p NAME VALUE` over as
whatever its parser guessed (`-p max_tokens 0` an int, `-p profiling false` the string "false"),
so each rule takes either and returns the value in its type, or raises `UserError` with what was
expected. `cli.options` turns that into argparse's message, `check` into one naming the parameter;
neither path imports torch.
"""
from __future__ import annotations

from .errors import UserError

SOURCE_HELP = "hub, local:DIR, synthetic or tiny"
MODELS = ("original", "turbo", "multilingual")  # engine.sources.LAYOUTS holds their files; a test keeps them equal
MODEL_HELP = ("which Chatterbox: original (Llama T3, 10-step CFM flow with CFG), turbo (GPT-2 T3, "
              "2-step mean-flow decoder, no CFG) or multilingual (the original's architecture, 23 languages)")
# What each model speaks (ISO 639-1). The multilingual list is chatterbox.mtl_tts.SUPPORTED_LANGUAGES's
# keys, written here so that checking a parameter needs no torch; a test keeps the two equal.
MULTILINGUAL = ("ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja", "ko", "ms", "nl", "no",
                "pl", "pt", "ru", "sv", "sw", "tr", "zh")
LANGUAGES = {"original": ("en",), "turbo": ("en",), "multilingual": MULTILINGUAL}
LANGUAGE_HELP = "the text's language, an ISO 639-1 code (default en; other languages need --model multilingual)"
DEVICE_HELP = "auto, cpu or cuda"
DTYPES = ("float32", "bfloat16", "float16")
MAX_TOKENS = 1000  # upstream's cap on speech tokens (40 s of speech); the pipeline enforces the same


def source(value) -> str:
    text = str(value)
    if text in ("hub", "synthetic", "tiny") or (text.startswith("local:") and len(text) > len("local:")):
        return text
    raise UserError(f"unknown source {value!r}: expected {SOURCE_HELP}")


def model(value) -> str:
    if value in MODELS:
        return value
    raise UserError(f"unknown model {value!r}: expected {', '.join(MODELS)}")


def language(value) -> str:
    """An ISO 639-1 code that some model of the family speaks, lower-cased."""
    text = str(value).strip().lower()
    if text in MULTILINGUAL:
        return text
    raise UserError(f"unknown language {value!r}: expected an ISO 639-1 code the multilingual model speaks "
                    f"({', '.join(MULTILINGUAL)})")


def speaks(model_name: str, code: str) -> str:
    """CODE when MODEL_NAME speaks it; otherwise one error naming both and the model that would."""
    code = language(code)
    if code in LANGUAGES[model(model_name)]:
        return code
    raise UserError(f"the {model_name} model speaks English only, not {code!r}: use --model multilingual "
                    f"(or a prompts CSV whose language column says en)")


def device(value) -> str:
    text = str(value)
    if text in ("auto", "cpu", "cuda") or text.startswith("cuda:"):
        return text
    raise UserError(f"unknown device {value!r}: expected {DEVICE_HELP}")


def dtype(value) -> str:
    if value in DTYPES:
        return value
    raise UserError(f"unknown dtype {value!r}: expected {', '.join(DTYPES)}")


def whole(value, minimum: int = 0, maximum: int | None = None, why_maximum: str = "") -> int:
    """A whole number in [MINIMUM, MAXIMUM]; True and 2.5 are not whole numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"expected a whole number, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"expected a whole number, got {value!r}") from None
    if n < minimum:
        raise UserError(f"expected at least {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise UserError(f"expected at most {maximum}{f' ({why_maximum})' if why_maximum else ''}, got {n}")
    return n


def count(value) -> int:
    """A whole number from 0 (seeds, counts)."""
    return whole(value, 0)


def positive(value) -> int:
    return whole(value, 1)


def tokens(value) -> int:
    """A forced speech-token count, 1 to MAX_TOKENS (25 tokens are one second of speech)."""
    return whole(value, 1, MAX_TOKENS, "upstream's cap, 40 s of speech")


def flag(value) -> bool:
    """A boolean; a shell hands `false` over as a string, and every non-empty string is true."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise UserError(f"expected true or false, got {value!r}")


def check(name: str, value, rule):
    """VALUE by RULE, or one error naming the parameter (for notebook parameters)."""
    try:
        return rule(value)
    except UserError as exc:
        raise UserError(f"parameter {name}: {exc}") from None
