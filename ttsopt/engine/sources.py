"""Model sources — hub, local:DIR, synthetic, tiny — built from chatterbox-tts's own classes.

A loaded model is an upstream `ChatterboxTTS` (so `prepare_conditionals`, the watermarker and
every module are upstream's) plus what the workbench needs to know about it: where the
weights came from, the architecture, load time.

`synthetic` and `tiny` weights are seeded random, with a generated tokenizer and
conditionals from `data/prompts/reference.wav`. They are saved in the five-file local-dir
layout (plus `ttsopt-arch.json` naming the architecture) and read back through the same
`local:DIR` path that real weights take, so tests exercise the real loading code.

Random weights are built once and kept in a cache ($TTSOPT_CACHE, default ~/.cache/ttsopt;
`TTSOPT_CACHE=off` builds them every time), keyed by architecture, seed, the reference
clip's bytes and the code that builds them. Every later load reads them back through
`local:DIR`, like real weights: drawing 800M random values and computing the voice
conditionals costs ~10 s on a 2-core CPU, in every fresh process of a suite.
"""
from __future__ import annotations

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
from chatterbox.models.tokenizers import EnTokenizer
from chatterbox.tts import ChatterboxTTS, Conditionals
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..core.errors import UserError
from ..measure.timing import Stopwatch
from . import arch as arch_mod

WEIGHT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")
CONDS_FILE = "conds.pt"
LOCAL_FILES = WEIGHT_FILES + (CONDS_FILE,)
ARCH_FILE = "ttsopt-arch.json"
HUB_REPO = "ResembleAI/chatterbox"
SOURCES = ("hub", "local:DIR", "synthetic", "tiny")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REFERENCE_WAV = Path(__file__).resolve().parents[2] / "data" / "prompts" / "reference.wav"


class SourceError(UserError):
    """A model source that cannot be used; the message says why and what to do."""


@dataclass
class Model:
    tts: ChatterboxTTS
    source: str
    arch: str
    device: torch.device
    dtype: torch.dtype
    load_s: float
    random_weights: bool  # synthetic/tiny: audio is noise, speech length must be forced

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


def load(source: str, device: str = "auto", dtype: str = "float32", seed: int = 0,
         reference_wav: str | Path | None = None) -> Model:
    """Load a model from SOURCE (hub, local:DIR, synthetic, tiny) onto DEVICE.

    DTYPE casts T3 and the S3Gen flow, the two large parts; the vocoder, tokenizers and
    encoders stay in float32 (variants change precision per module group).
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    clock = Stopwatch(dev)
    if source in ("synthetic", "tiny"):
        arch, random_weights = ("full" if source == "synthetic" else "tiny"), True
        tts = cached_random(arch, seed, dev, reference_wav or REFERENCE_WAV)
    elif source.startswith("local:"):
        tts, arch, random_weights = _load_local(Path(source[len("local:"):]), dev)
    elif source == "hub":
        tts, arch, random_weights = _load_local(_download_hub(), dev)
    else:
        raise SourceError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    if dt != torch.float32:
        tts.t3.to(dt)
        tts.s3gen.flow.to(dt)
        if tts.conds is not None:  # T3 reads the speaker embedding and prompt through its own linears
            tts.conds.t3.to(dtype=dt)
    return Model(tts, source, arch, dev, dt, clock.elapsed(), random_weights)


def build_random(arch: str, seed: int, device: torch.device, reference_wav) -> ChatterboxTTS:
    """Seeded random weights in upstream's classes, a generated tokenizer and conditionals."""
    t3, s3gen, ve = arch_mod.build(arch, seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = EnTokenizer(str(write_tokenizer(Path(tmp) / "tokenizer.json")))
    tts = _quietly(ChatterboxTTS, t3.to(device).eval(), s3gen.to(device).eval(), ve.to(device).eval(),
                   tokenizer, str(device))
    prepare_voice(tts, reference_wav)
    return tts


CACHE_FORMAT = "1"  # bump when what is written, or how it is built, changes


def cache_root() -> Path | None:
    """Where random weights are kept; None when TTSOPT_CACHE=off."""
    value = os.environ.get("TTSOPT_CACHE", "")
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "ttsopt"


def random_cache_dir(arch: str, seed: int, reference_wav) -> Path | None:
    root = cache_root()
    if root is None:
        return None
    from importlib.metadata import version
    key = hashlib.sha256()
    for part in (CACHE_FORMAT, arch, str(seed), version("chatterbox-tts"), torch.__version__):
        key.update(part.encode() + b"\0")
    for path in (arch_mod.__file__, __file__, reference_wav):  # the builders and the voice
        key.update(Path(path).read_bytes())
    return root / f"{arch}-seed{seed}-{key.hexdigest()[:16]}"


def cached_random(arch: str, seed: int, device: torch.device, reference_wav) -> ChatterboxTTS:
    """`build_random`, read from the cache when it holds this build, written to it when not."""
    from .audio import check_reference
    check_reference(reference_wav)  # a bad clip is named before anything is hashed or built
    directory = random_cache_dir(arch, seed, reference_wav)
    if directory is not None and (directory / ARCH_FILE).is_file():
        try:
            tts = _load_local(directory, device)[0]
        except Exception as exc:  # our own entry, damaged however: rebuilt, and the user told so
            print(f"ttsopt: rebuilding the cached {arch} weights: {type(exc).__name__}: {exc}", file=sys.stderr)
            shutil.rmtree(directory, ignore_errors=True)
        else:
            try:
                os.utime(directory)  # recently used: the last entry eviction would take
            except OSError:
                pass  # a read-only cache still serves
            return tts
    tts = build_random(arch, seed, device, reference_wav)
    if directory is not None:
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
            write_layout(tts, arch, True, staging)  # the arch file last: it marks an entry complete
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


def prepare_voice(tts: ChatterboxTTS, wav_path, exaggeration: float = 0.5) -> None:
    """Upstream's `prepare_conditionals`, after checks that turn a bad clip into a clear error."""
    from .audio import check_reference  # librosa is slow to import; only needed here
    check_reference(wav_path)
    with torch.inference_mode():
        tts.prepare_conditionals(str(wav_path), exaggeration=exaggeration)


def save_local(model: Model, directory: str | Path) -> Path:
    """Write the five-file layout (plus the architecture name) that `local:DIR` reads."""
    return write_layout(model.tts, model.arch, model.random_weights, directory)


def write_layout(tts: ChatterboxTTS, arch: str, random_weights: bool, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in (("ve", tts.ve), ("t3_cfg", tts.t3), ("s3gen", tts.s3gen)):
        state = {k: v.detach().float().contiguous().cpu() for k, v in module.state_dict().items()}
        save_file(state, str(directory / f"{name}.safetensors"))
    tts.tokenizer.tokenizer.save(str(directory / "tokenizer.json"))
    tts.conds.save(directory / CONDS_FILE)
    (directory / ARCH_FILE).write_text(json.dumps({"arch": arch, "random_weights": random_weights}))
    return directory


def _load_local(directory: Path, device: torch.device):
    if not directory.is_dir():
        raise SourceError(f"local weights directory {directory} does not exist")
    missing = [f for f in WEIGHT_FILES if not (directory / f).is_file()]
    if missing:
        raise SourceError(f"local weights directory {directory} is missing {', '.join(missing)} "
                          f"(expected {', '.join(LOCAL_FILES)})")
    with _reading(directory / ARCH_FILE):
        meta = json.loads((directory / ARCH_FILE).read_text()) if (directory / ARCH_FILE).is_file() else {}
        arch, random_weights = meta.get("arch", "full"), meta.get("random_weights", False)
        t3, s3gen, ve = arch_mod.build(arch, init=False)  # every parameter is loaded below, strictly

    with _reading(directory / "ve.safetensors"):
        ve.load_state_dict(_read_safetensors(directory / "ve.safetensors"))
    with _reading(directory / "t3_cfg.safetensors"):
        t3_state = _read_safetensors(directory / "t3_cfg.safetensors")
        if "model" in t3_state:  # some upstream checkpoints nest the state dict
            t3_state = t3_state["model"][0]
        t3.load_state_dict(t3_state)
    with _reading(directory / "s3gen.safetensors"):
        result = s3gen.load_state_dict(_read_safetensors(directory / "s3gen.safetensors"), strict=False)
    # Upstream loads S3Gen non-strictly because the tokenizer's mel filters are rebuilt, not stored.
    unexpected_missing = [k for k in result.missing_keys if k not in s3gen.ignore_state_dict_missing]
    if unexpected_missing or result.unexpected_keys:
        raise SourceError(f"{directory / 's3gen.safetensors'} does not match S3Gen: "
                          f"{len(unexpected_missing)} missing and {len(result.unexpected_keys)} "
                          f"unexpected tensors (e.g. {(unexpected_missing + result.unexpected_keys)[:3]})")
    with _reading(directory / "tokenizer.json"):
        tokenizer = EnTokenizer(str(directory / "tokenizer.json"))
    tts = _quietly(ChatterboxTTS, t3.to(device).eval(), s3gen.to(device).eval(), ve.to(device).eval(),
                   tokenizer, str(device))
    if (directory / CONDS_FILE).is_file():
        # torch's own message would advise weights_only=False, which is no cure for a corrupt file
        with _reading(directory / CONDS_FILE, "not the conditionals Chatterbox saves"):
            tts.conds = Conditionals.load(directory / CONDS_FILE, map_location="cpu").to(device)
    return tts, arch, random_weights


def _quietly(make, *args):
    """MAKE(*ARGS) without what it prints: upstream's watermarker prints a line on every load,
    which would bury the stage table a user asked for."""
    with redirect_stdout(io.StringIO()):
        return make(*args)


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


def _read_safetensors(path: Path) -> dict:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc} (truncated or not a safetensors file?)") from exc


def _download_hub() -> Path:
    try:
        from huggingface_hub import hf_hub_download
        paths = [hf_hub_download(repo_id=HUB_REPO, filename=f) for f in LOCAL_FILES]
    except Exception as exc:  # network, auth or offline mode: all end the same way for the user
        raise SourceError(f"cannot fetch {HUB_REPO} from the Hugging Face hub ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); download the five files "
                          "and use --source local:DIR") from exc
    return Path(paths[0]).parent


# The generated tokenizer: one token per character (a BPE with no merges), the special tokens
# EnTokenizer checks, and upstream's fixed ids for [STOP] (0) and [START] (255).
_SPECIALS_LOW = ["[STOP]", "[UNK]", "[SPACE]"]
_SPECIALS_HIGH = ["[START]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]


def write_tokenizer(path: Path) -> Path:
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    # Printable ASCII, every Latin-1 letter (place and person names: São Paulo, Zürich, Ångström)
    # and the typographic punctuation word processors put in; ids stay below [START]'s 255.
    letters = [chr(c) for c in range(0xC0, 0x100) if chr(c).isalpha()]
    chars = [chr(c) for c in range(33, 127)] + letters + list("’‘“”—–…")
    vocab = {tok: i for i, tok in enumerate(_SPECIALS_LOW + chars)}
    vocab.update({tok: 255 + i for i, tok in enumerate(_SPECIALS_HIGH)})
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in _SPECIALS_LOW + _SPECIALS_HIGH])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    return path
