"""Audio files in and out: reference-clip checks and wav writing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..core.errors import StorageError, UserError

MIN_REFERENCE_S = 1.0
MIN_REFERENCE_SR = 16_000   # the S3 tokenizer and voice encoder work at 16 kHz
SILENCE_RMS = 1e-4          # about -80 dBFS: nothing a speaker embedding can be taken from


class ReferenceError(UserError):
    """A reference clip that cannot condition the model; the message says why."""


def check_reference(path, min_s: float | None = None) -> None:
    """A clip a voice can be taken from: readable, not silent, at least MIN_REFERENCE_S long and,
    where a model asks for it, longer than MIN_S."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"reference clip {path} does not exist")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own error types per format
        raise ReferenceError(f"reference clip {path} is not readable audio ({exc})") from exc
    if sr < MIN_REFERENCE_SR:
        raise ReferenceError(f"reference clip {path} is sampled at {sr} Hz; at least "
                             f"{MIN_REFERENCE_SR} Hz is needed (24 kHz is best)")
    if min_s is not None and len(wav) / sr <= min_s:
        raise ReferenceError(f"reference clip {path} is {len(wav) / sr:.2f} s long; this model needs "
                             f"more than {min_s:.0f} s")
    if len(wav) / sr < MIN_REFERENCE_S:
        raise ReferenceError(f"reference clip {path} is {len(wav) / sr:.2f} s long; "
                             f"at least {MIN_REFERENCE_S:.0f} s of speech is needed")
    if float(np.sqrt(np.mean(np.square(wav)))) < SILENCE_RMS:
        raise ReferenceError(f"reference clip {path} is silent")


def write_wav(path, wav: np.ndarray, sr: int) -> Path:
    """Write 16-bit PCM atomically: a failed run leaves no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        sf.write(str(tmp), np.asarray(wav, dtype=np.float32).reshape(-1), sr, subtype="PCM_16", format="WAV")
        tmp.replace(path)
    except BaseException as exc:  # disk full, or an interruption mid-write
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):  # soundfile reports a failed write as RuntimeError
            raise StorageError(f"cannot write {path}: {exc}") from None
        raise
    return path
