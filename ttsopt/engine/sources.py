"""Model sources — hub, local:DIR, synthetic, tiny — built from chatterbox-tts's own classes.

A loaded model is an upstream `ChatterboxTTS`, `ChatterboxTurboTTS` or
`ChatterboxMultilingualTTS` (so
`prepare_conditionals`, the watermarker and every module are upstream's) plus what the
workbench needs to know about it: which model of the family, where the weights came from,
the architecture, load time. Each model has its own file layout (`LAYOUTS`: the files its
upstream `from_local` reads) and hub repository.

`synthetic` and `tiny` weights are seeded random, with a generated tokenizer (Turbo's is a
byte-level BPE read by transformers' `AutoTokenizer`, like the real GPT-2 one; the
multilingual one holds every language token and the scripts of its languages) and
conditionals from `data/prompts/reference.wav`. They are saved in the model's local-dir
layout (plus `ttsopt-arch.json` naming the model and architecture) and read back through the
same `local:DIR` path that real weights take, so tests exercise the real loading code.

Random weights are built once and kept in a cache ($TTSOPT_CACHE, default ~/.cache/ttsopt;
`TTSOPT_CACHE=off` builds them every time), keyed by architecture, seed, the reference
clip's bytes and the code that builds them. Every later load reads them back through
`local:DIR`, like real weights: drawing 800M random values and computing the voice
conditionals costs ~10 s on a 2-core CPU, in every fresh process of a suite.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from chatterbox.models.tokenizers import EnTokenizer, MTLTokenizer
from chatterbox.models.tokenizers import tokenizer as tokenizer_module
from chatterbox.mtl_tts import ChatterboxMultilingualTTS
from chatterbox.mtl_tts import Conditionals as MultilingualConditionals
from chatterbox.tts import ChatterboxTTS, Conditionals
from chatterbox.tts_turbo import ChatterboxTurboTTS
from chatterbox.tts_turbo import Conditionals as TurboConditionals
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..core.errors import UserError
from ..measure.timing import Stopwatch
from . import arch as arch_mod
from . import checkpoint

CONDS_FILE = "conds.pt"
ARCH_FILE = "ttsopt-arch.json"
CANGJIE_FILE = "Cangjie5_TC.json"  # the multilingual tokenizer's Chinese-to-Cangjie mapping


@dataclass(frozen=True)
class Layout:
    """The files a model's upstream `from_local` reads, and where the hub keeps them."""
    t3: str
    s3gen: str
    tokenizer: str
    hub_repo: str
    tts_class: type
    conds_class: type
    ve: str = "ve.safetensors"
    optional: tuple[str, ...] = ()  # read when present (the multilingual model's Chinese mapping)

    @property
    def weight_files(self) -> tuple[str, ...]:
        return (self.ve, self.t3, self.s3gen, self.tokenizer)

    @property
    def local_files(self) -> tuple[str, ...]:
        return self.weight_files + (CONDS_FILE,)


LAYOUTS = {
    "original": Layout("t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "ResembleAI/chatterbox",
                       ChatterboxTTS, Conditionals),
    # AutoTokenizer reads the GPT-2 tokenizer from the folder: tokenizer.json, or vocab.json + merges.txt.
    "turbo": Layout("t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors", "tokenizer_config.json",
                    "ResembleAI/chatterbox-turbo", ChatterboxTurboTTS, TurboConditionals),
    # Upstream's multilingual from_local reads torch pickles (weights only) for the voice encoder and S3Gen.
    "multilingual": Layout("t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json",
                           "ResembleAI/chatterbox", ChatterboxMultilingualTTS, MultilingualConditionals,
                           ve="ve.pt", optional=(CANGJIE_FILE,)),
}
MODELS = tuple(LAYOUTS)
WEIGHT_FILES = LAYOUTS["original"].weight_files
LOCAL_FILES = LAYOUTS["original"].local_files
HUB_REPO = LAYOUTS["original"].hub_repo
SOURCES = ("hub", "local:DIR", "synthetic", "tiny")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REFERENCE_WAV = Path(__file__).resolve().parents[2] / "data" / "prompts" / "reference.wav"
PROMPTS_CSV = REFERENCE_WAV.with_name("prompts.csv")  # the generated GPT-2 tokenizer's merges come from it
# Turbo's upstream `prepare_conditionals` refuses a reference of 5 s or less.
REFERENCE_WAVS = {"original": REFERENCE_WAV, "turbo": REFERENCE_WAV.with_name("reference-turbo.wav"),
                  "multilingual": REFERENCE_WAV}
MIN_REFERENCE_S = {"turbo": 5.0}


class SourceError(UserError):
    """A model source that cannot be used; the message says why and what to do."""


@dataclass
class Model:
    tts: ChatterboxTTS | ChatterboxTurboTTS | ChatterboxMultilingualTTS
    source: str
    arch: str
    device: torch.device
    dtype: torch.dtype
    load_s: float
    random_weights: bool  # synthetic/tiny: audio is noise, speech length must be forced
    name: str = "original"  # which model of the family: original, turbo or multilingual

    @property
    def t3(self):
        return self.tts.t3

    @property
    def s3gen(self):
        return self.tts.s3gen


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SourceError(f"--device {device} was asked for, but this torch ({torch.__version__}) "
                          "sees no CUDA device; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise SourceError(f"unknown device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise SourceError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_model(model: str) -> str:
    if model not in LAYOUTS:
        raise SourceError(f"unknown model {model!r}: expected one of {', '.join(LAYOUTS)}")
    return model


def load(source: str, device: str = "auto", dtype: str = "float32", seed: int = 0,
         reference_wav: str | Path | None = None, model: str = "original") -> Model:
    """Load MODEL (original, turbo, multilingual) from SOURCE (hub, local:DIR, synthetic, tiny) onto DEVICE.

    DTYPE casts T3 and the S3Gen flow, the two large parts; the vocoder, tokenizers and
    encoders stay in float32 (variants change precision per module group).
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    check_model(model)
    clock = Stopwatch(dev)
    if source in ("synthetic", "tiny"):
        arch, random_weights = ("full" if source == "synthetic" else "tiny"), True
        tts = cached_random(arch, seed, dev, reference_wav or REFERENCE_WAVS[model], model)
    elif source.startswith("local:"):
        tts, arch, random_weights = _load_local(Path(source[len("local:"):]), dev, model)
    elif source == "hub":
        tts, arch, random_weights = _load_local(_download_hub(model), dev, model)
    else:
        raise SourceError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    if dt != torch.float32:
        tts.t3.to(dt)
        tts.s3gen.flow.to(dt)
        if tts.conds is not None:  # T3 reads the speaker embedding and prompt through its own linears
            tts.conds.t3.to(dtype=dt)
    return Model(tts, source, arch, dev, dt, clock.elapsed(), random_weights, model)


def build_random(arch: str, seed: int, device: torch.device, reference_wav, model: str = "original"):
    """Seeded random weights in upstream's classes, a generated tokenizer and conditionals."""
    t3, s3gen, ve = arch_mod.build(arch, seed, model=model)
    with tempfile.TemporaryDirectory() as tmp:
        if model == "turbo":
            tokenizer = _turbo_tokenizer(write_gpt2_tokenizer(Path(tmp)))
            del t3.tfmr.wte  # upstream drops GPT-2's word embeddings: T3 feeds its own embeddings in
        elif model == "multilingual":
            write_cangjie(Path(tmp) / CANGJIE_FILE)
            tokenizer = _mtl_tokenizer(write_mtl_tokenizer(Path(tmp) / LAYOUTS[model].tokenizer))
        else:
            tokenizer = EnTokenizer(str(write_tokenizer(Path(tmp) / "tokenizer.json")))
    tts = _quietly(LAYOUTS[model].tts_class, t3.to(device).eval(), s3gen.to(device).eval(),
                   ve.to(device).eval(), tokenizer, str(device))
    prepare_voice(tts, reference_wav, exaggeration=0.0 if model == "turbo" else 0.5)
    return tts


CACHE_FORMAT = "1"  # bump when what is written, or how it is built, changes


def cache_root() -> Path | None:
    """Where random weights are kept; None when TTSOPT_CACHE=off."""
    value = os.environ.get("TTSOPT_CACHE", "")
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "ttsopt"


def random_cache_dir(arch: str, seed: int, reference_wav, model: str = "original") -> Path | None:
    root = cache_root()
    if root is None:
        return None
    from importlib.metadata import version
    key = hashlib.sha256()
    for part in (CACHE_FORMAT, model, arch, str(seed), version("chatterbox-tts"), torch.__version__):
        key.update(part.encode() + b"\0")
    for path in (arch_mod.__file__, __file__, reference_wav, PROMPTS_CSV):  # builders, voice, tokenizer's text
        key.update(Path(path).read_bytes())
    prefix = "" if model == "original" else f"{model}-"
    return root / f"{prefix}{arch}-seed{seed}-{key.hexdigest()[:16]}"


def cached_random(arch: str, seed: int, device: torch.device, reference_wav, model: str = "original"):
    """`build_random`, read from the cache when it holds this build, written to it when not."""
    from .audio import check_reference
    check_reference(reference_wav, MIN_REFERENCE_S.get(model))  # named before anything is hashed or built
    directory = random_cache_dir(arch, seed, reference_wav, model)
    if directory is not None and (directory / ARCH_FILE).is_file():
        try:
            tts = _load_local(directory, device, model)[0]
        except Exception as exc:  # our own entry, damaged however: rebuilt, and the user told so
            print(f"ttsopt: rebuilding the cached {arch} weights: {type(exc).__name__}: {exc}", file=sys.stderr)
            shutil.rmtree(directory, ignore_errors=True)
        else:
            try:
                os.utime(directory)  # recently used: the last entry eviction would take
            except OSError:
                pass  # a read-only cache still serves
            return tts
    tts = build_random(arch, seed, device, reference_wav, model)
    if directory is not None:
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
            write_layout(tts, arch, True, staging, model)  # the arch file last: it marks an entry complete
            try:
                staging.rename(directory)
            except OSError:  # another process finished the same entry first
                shutil.rmtree(staging, ignore_errors=True)
            _evict_stale(directory)
        except OSError as exc:
            print(f"ttsopt: could not cache the {arch} weights in {directory.parent} ({exc}); "
                  "they will be built again next time", file=sys.stderr)
    return tts


KEEP_ENTRIES = 2  # per (architecture, seed): the current build and one other checkout's


def _evict_stale(directory: Path) -> None:
    """A full-size entry is 3 GB and every change to the builders makes a new one: keep the
    KEEP_ENTRIES most recent per architecture and seed, remove older ones (and dead staging)."""
    prefix = directory.name.rsplit("-", 1)[0] + "-"
    entries = sorted((d for d in directory.parent.glob(prefix + "*") if d.is_dir()),
                     key=lambda d: d.stat().st_mtime, reverse=True)
    for old in entries[KEEP_ENTRIES:]:
        shutil.rmtree(old, ignore_errors=True)
    for staging in directory.parent.glob(f".{prefix}*"):
        if time.time() - staging.stat().st_mtime > 3600:  # a build that died over an hour ago
            shutil.rmtree(staging, ignore_errors=True)


def prepare_voice(tts, wav_path, exaggeration: float = 0.5) -> None:
    """Upstream's `prepare_conditionals`, after checks that turn a bad clip into a clear error."""
    from .audio import check_reference  # librosa is slow to import; only needed here
    check_reference(wav_path, MIN_REFERENCE_S.get("turbo" if isinstance(tts, ChatterboxTurboTTS) else "original"))
    with torch.inference_mode():
        tts.prepare_conditionals(str(wav_path), exaggeration=exaggeration)


def save_local(model: Model, directory: str | Path) -> Path:
    """Write the model's local-dir layout (plus model and architecture names) that `local:DIR` reads."""
    return write_layout(model.tts, model.arch, model.random_weights, directory, model.name)


def write_layout(tts, arch: str, random_weights: bool, directory: str | Path, model: str = "original") -> Path:
    directory, layout = Path(directory), LAYOUTS[model]
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in ((layout.ve, tts.ve), (layout.t3, tts.t3), (layout.s3gen, tts.s3gen)):
        # Upstream's T3.inference attaches its backend as `patched_model`: aliases of T3's own tensors.
        state = {k: v.detach().float().contiguous().cpu() for k, v in module.state_dict().items()
                 if not k.startswith("patched_model.")}
        if module is tts.t3 and model == "turbo" and "tfmr.wte.weight" not in state:
            state["tfmr.wte.weight"] = _dropped_word_embeddings(tts.t3, random_weights)
        # A new file in the old one's place, never written over: a loaded model maps the old one's pages.
        if name.endswith(".pt"):
            written = directory / f".{name}.writing"
            torch.save(state, written)
            os.replace(written, directory / name)
        else:  # safetensors' own way is a new file
            save_file(state, str(directory / name))
    if model == "turbo":
        tts.tokenizer.save_pretrained(str(directory))
    else:
        tts.tokenizer.tokenizer.save(str(directory / layout.tokenizer))
    if model == "multilingual" and tts.tokenizer.cangjie_converter.word2cj:
        mapping = tts.tokenizer.cangjie_converter.word2cj
        (directory / CANGJIE_FILE).write_text(json.dumps([f"{w}\t{c}" for w, c in mapping.items()],
                                                         ensure_ascii=False), encoding="utf-8")
    tts.conds.save(directory / CONDS_FILE)
    (directory / ARCH_FILE).write_text(json.dumps({"model": model, "arch": arch, "random_weights": random_weights}))
    return directory


def _dropped_word_embeddings(t3, random_weights: bool) -> torch.Tensor:
    """Turbo's checkpoint holds GPT-2's word embeddings, which upstream deletes after loading (T3
    feeds its own embeddings in). Random weights never had meaningful ones: zeros keep the file
    loadable by upstream's strict `load_state_dict`. Real ones are gone and cannot be written."""
    if not random_weights:
        raise SourceError("cannot save Turbo's real weights: upstream drops GPT-2's word embeddings "
                          "on loading, so the checkpoint cannot be written back; copy the original files")
    return torch.zeros(t3.hp.text_tokens_dict_size, t3.cfg.hidden_size)


def folder_model(directory: Path) -> str | None:
    """Which model's files DIRECTORY holds (by its T3 checkpoint), or None."""
    found = [m for m, layout in LAYOUTS.items() if (directory / layout.t3).is_file()]
    return found[0] if len(found) == 1 else None


def _load_local(directory: Path, device: torch.device, model: str = "original"):
    if not directory.is_dir():
        raise SourceError(f"local weights directory {directory} does not exist")
    held = folder_model(directory)
    if held is not None and held != model:
        raise SourceError(f"{directory} holds the {held} model's weights ({LAYOUTS[held].t3}), "
                          f"not the {model} model's; add --model {held}")
    layout = LAYOUTS[model]
    missing = [f for f in layout.weight_files if not (directory / f).is_file()]
    if missing:
        raise SourceError(f"local weights directory {directory} is missing {', '.join(missing)} "
                          f"(expected {', '.join(layout.local_files)} for the {model} model)")
    with _reading(directory / ARCH_FILE):
        meta = json.loads((directory / ARCH_FILE).read_text()) if (directory / ARCH_FILE).is_file() else {}
        arch, random_weights = meta.get("arch", "full"), meta.get("random_weights", False)
        t3, s3gen, ve = arch_mod.build(arch, init=False, model=model)  # every parameter is loaded below

    with _reading(directory / layout.ve):
        _load_into(ve, _read_state(directory / layout.ve))
    with _reading(directory / layout.t3):
        t3_state = _read_state(directory / layout.t3)
        if "model" in t3_state:  # some upstream checkpoints nest the state dict
            t3_state = t3_state["model"][0]
        _load_into(t3, t3_state)
        if model == "turbo":
            del t3.tfmr.wte  # as upstream: T3 feeds its own embeddings to GPT-2
    with _reading(directory / layout.s3gen):
        result = _load_into(s3gen, _read_state(directory / layout.s3gen), strict=False)
    # Upstream loads S3Gen non-strictly because the tokenizer's mel filters are rebuilt, not stored.
    unexpected_missing = [k for k in result.missing_keys if k not in s3gen.ignore_state_dict_missing]
    if unexpected_missing or result.unexpected_keys:
        raise SourceError(f"{directory / layout.s3gen} does not match S3Gen: "
                          f"{len(unexpected_missing)} missing and {len(result.unexpected_keys)} "
                          f"unexpected tensors (e.g. {(unexpected_missing + result.unexpected_keys)[:3]})")
    with _reading(directory / layout.tokenizer):
        tokenizer = (_turbo_tokenizer(directory) if model == "turbo"
                     else _mtl_tokenizer(directory / layout.tokenizer) if model == "multilingual"
                     else EnTokenizer(str(directory / layout.tokenizer)))
    tts = _quietly(layout.tts_class, t3.to(device).eval(), s3gen.to(device).eval(), ve.to(device).eval(),
                   tokenizer, str(device))
    if (directory / CONDS_FILE).is_file():
        # torch's own message would advise weights_only=False, which is no cure for a corrupt file
        with _reading(directory / CONDS_FILE, "not the conditionals Chatterbox saves"):
            tts.conds = layout.conds_class.load(directory / CONDS_FILE, map_location="cpu").to(device)
    return tts, arch, random_weights


def _turbo_tokenizer(directory: Path):
    """Turbo's text tokenizer as upstream reads it: transformers' AutoTokenizer from the folder,
    the end-of-text token doubling as padding."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _mtl_tokenizer(path: Path) -> MTLTokenizer:
    """Upstream's multilingual tokenizer, read from the weights folder. Upstream's constructor asks
    the hub for the Chinese-to-Cangjie mapping on every load; here the mapping is read from the
    folder (Cangjie5_TC.json, fetched with the hub source) and nothing is downloaded at load time.
    Without the file the mapping is empty, and Chinese text is refused (`pipeline`)."""
    def local_only(repo_id=None, filename=None, cache_dir=None, **kwargs):
        candidate = Path(cache_dir or path.parent) / filename
        if not candidate.is_file():
            raise FileNotFoundError(f"{candidate} (not downloaded at load time)")
        return str(candidate)

    import logging
    quiet = logging.getLogger(tokenizer_module.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its warnings about missing optional packages are ours to give, per language
    original = tokenizer_module.hf_hub_download
    tokenizer_module.hf_hub_download = local_only
    try:
        return MTLTokenizer(str(path))
    finally:
        tokenizer_module.hf_hub_download = original
        quiet.setLevel(level)


def _quietly(make, *args):
    """MAKE(*ARGS) without what it prints: upstream's watermarker prints a line on every load,
    which would bury the stage table a user asked for."""
    with redirect_stdout(io.StringIO()):
        tts = make(*args)
    if isinstance(tts, ChatterboxTurboTTS):
        _keep_float32_loudness(tts)
    return tts


def _keep_float32_loudness(tts: ChatterboxTurboTTS) -> None:
    """Turbo's `norm_loudness` scales the clip by a NumPy float64 gain. Under the NumPy < 2 that
    chatterbox-tts pins, the clip stays float32; under NumPy 2 (ours) it becomes float64 and the S3
    tokenizer's float32 mel filters refuse it. Casting the result back restores upstream's
    behaviour under its own pins: the same values, in float32."""
    upstream = type(tts).norm_loudness

    def norm_loudness(wav, sr, *args, **kwargs):
        out = upstream(tts, wav, sr, *args, **kwargs)
        return out.astype(wav.dtype, copy=False) if hasattr(out, "astype") else out

    tts.norm_loudness = norm_loudness


@contextmanager
def _reading(path: Path, what: str | None = None):
    """Any failure to read or fit one file of a weights folder becomes one line naming the file:
    a wrong shape, corrupt JSON, a pickle that is not Chatterbox's conditionals. WHAT replaces
    the library's own message where that message gives advice that is wrong here."""
    try:
        yield
    except SourceError:
        raise
    except Exception as exc:
        detail = what or (str(exc).strip().splitlines() or [""])[0][:200]
        raise SourceError(f"cannot use {path} ({type(exc).__name__}: {detail}): it is corrupt, or from another "
                          "model; copy it again from the model's repository") from None


def _load_into(module: torch.nn.Module, state: dict, strict: bool = True):
    """STATE's tensors become MODULE's own (`assign=True`: no copy, see `checkpoint`), each cast
    first to the dtype the module built it with, so a float16 file still loads a float32 model."""
    own = module.state_dict(keep_vars=True)
    for key, tensor in state.items():
        if key in own and tensor.is_floating_point() and tensor.dtype != own[key].dtype:
            state[key] = tensor.to(own[key].dtype)
    return module.load_state_dict(state, strict=strict, assign=True)


def _read_state(path: Path) -> dict:
    """A state dict from safetensors or from a torch pickle read weights-only (`.pt`, as upstream),
    their large tensors mapped from the file (`checkpoint`)."""
    if path.suffix == ".pt":
        try:
            return checkpoint.read_pickle(path)
        except Exception as exc:
            raise SourceError(f"cannot read {path}: {type(exc).__name__} (truncated or not a torch "
                              "state dict?)") from exc
    try:
        return checkpoint.read(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc} (truncated or not a safetensors file?)") from exc


def _download_hub(model: str = "original") -> Path:
    layout = LAYOUTS[model]
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
        if model == "turbo":  # the tokenizer's file set is whatever the repository holds: upstream's patterns
            return Path(snapshot_download(repo_id=layout.hub_repo, allow_patterns=[
                "*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]))
        paths = [hf_hub_download(repo_id=layout.hub_repo, filename=f) for f in layout.local_files]
        for name in layout.optional:
            try:
                hf_hub_download(repo_id=layout.hub_repo, filename=name)
            except Exception as exc:  # the model loads without it; what it serves is refused, saying why
                print(f"ttsopt: could not fetch {name} ({type(exc).__name__}); text that needs it is refused",
                      file=sys.stderr)
    except Exception as exc:  # network, auth or offline mode: all end the same way for the user
        raise SourceError(f"cannot fetch {layout.hub_repo} from the Hugging Face hub ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); download its files "
                          f"({', '.join(layout.local_files)}) and use --source local:DIR") from exc
    return Path(paths[0]).parent


# The generated tokenizer: one token per character (a BPE with no merges), the special tokens
# EnTokenizer checks, and upstream's fixed ids for [STOP] (0) and [START] (255).
_SPECIALS_LOW = ["[STOP]", "[UNK]", "[SPACE]"]
_SPECIALS_HIGH = ["[START]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]


def write_tokenizer(path: Path, chars: list[str] | None = None, specials: tuple[str, ...] = ()) -> Path:
    """The original model's generated tokenizer, or with CHARS and SPECIALS another character
    tokenizer in the same layout (ids skip the fixed ones of [START] and the tokens after it)."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    if chars is None:
        # Printable ASCII, every Latin-1 letter (place and person names: São Paulo, Zürich, Ångström)
        # and the typographic punctuation word processors put in; ids stay below [START]'s 255.
        letters = [chr(c) for c in range(0xC0, 0x100) if chr(c).isalpha()]
        chars = [chr(c) for c in range(33, 127)] + letters + list("’‘“”—–…")
    high = range(255, 255 + len(_SPECIALS_HIGH))
    ids = (i for i in range(10**6) if i not in high)
    vocab = {tok: next(ids) for tok in _SPECIALS_LOW + list(specials) + chars}
    vocab.update({tok: 255 + i for i, tok in enumerate(_SPECIALS_HIGH)})
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in _SPECIALS_LOW + list(specials) + _SPECIALS_HIGH])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    return path


# The scripts of the multilingual model's languages, after upstream's lower-casing and NFKD
# (accents become combining marks): Latin, combining marks, Greek, Cyrillic, Hebrew, Arabic,
# Devanagari, Hangul jamo, kana; Chinese is spelled in Cangjie codes ([cj_a] ... [cj_z], [cj_.]).
_MTL_RANGES = ((0x21, 0x7F), (0xA1, 0x100), (0x300, 0x370), (0x370, 0x400), (0x400, 0x460), (0x591, 0x5F5),
               (0x600, 0x700), (0x900, 0x980), (0x1100, 0x1200), (0x3001, 0x3003), (0x3041, 0x3097),
               (0x30A1, 0x30FB), (0xFF01, 0xFF1F))


def write_mtl_tokenizer(path: Path) -> Path:
    """A character tokenizer with the multilingual model's language tokens ([en], [fr], ...)."""
    from ..core.params import MULTILINGUAL
    chars = [c for lo, hi in _MTL_RANGES for c in map(chr, range(lo, hi)) if c.isprintable() and not c.isspace()]
    specials = tuple(f"[{code}]" for code in MULTILINGUAL) + tuple(f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz.")
    return write_tokenizer(path, chars=chars + list("’‘“”—–…"), specials=specials)


def write_cangjie(path: Path) -> Path:
    """A generated Chinese-to-code mapping in Cangjie5_TC.json's format ("glyph\tcode" entries) for
    random weights: every CJK unified ideograph gets a distinct four-letter code. Not Cangjie's real
    codes (random weights speak noise either way); it lets Chinese text take upstream's path."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    entries = []
    for n, cp in enumerate(range(0x4E00, 0xA000)):
        code = "".join(letters[(n // 26**k) % 26] for k in range(4))
        entries.append(f"{chr(cp)}\t{code}")
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    return path


def gpt2_corpus() -> list[str]:
    """The text the generated GPT-2 tokenizer learns its merges from: the workbench's English prompts."""
    with open(PROMPTS_CSV, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def write_gpt2_tokenizer(directory: Path) -> Path:
    """A GPT-2-style byte-level BPE in the files AutoTokenizer reads: every byte a token, as in
    GPT-2, so any text tokenizes; and merges learned from the workbench's prompts (`gpt2_corpus`),
    so those read as a word or a punctuation mark a token, as GPT-2's 50k merges read common English.
    Without merges every byte was a position of its own, a prompt's text took several times the
    positions a real Turbo gives it, and its prefill, and so a stream's first audio, took the longer."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=arch_mod.TURBO_TEXT_VOCAB - 1, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(gpt2_corpus(), trainer)
    tokenizer.add_special_tokens([AddedToken("<|endoftext|>", special=True)])  # after the rest, as in GPT-2
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    special = "<|endoftext|>"
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2TokenizerFast", "bos_token": special, "eos_token": special,
        "unk_token": special, "model_max_length": 1024, "add_prefix_space": False}))
    return directory
