"""What a result was measured on, and keeping secrets out of everything written.

`capture()` names exactly the facts a reader needs to reproduce or distrust a number; it
never copies environment variables wholesale, because that is where tokens live.
"""

import configparser
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

REDACTED = "[redacted]"
_SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
# Flag-like values are never secrets; without this TOKENIZERS_PARALLELISM=false would
# redact every "false", and a numeric MAX_TOKENS would corrupt numbers inside the JSON
# evidence strings.
_NOT_SECRETS = {"true", "false", "none", "null"}


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or None


def _gpu() -> tuple[str | None, str | None]:
    """(GPU name, driver version); the driver needs NVML, torch does not expose it."""
    if not torch.cuda.is_available():
        return None, None
    name = torch.cuda.get_device_name()
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return name, pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # ImportError or any NVMLError: the driver is then unknown
        return name, None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def capture(source: str | None = None) -> dict:
    """The environment of this process; `source` is where the weights came from."""
    gpu_name, gpu_driver = _gpu()
    commit = _git("rev-parse", "HEAD")
    # Untracked files (results, reports) do not change the code that ran.
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    env = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu_name": gpu_name,
        "gpu_driver": gpu_driver,
        "chatterbox_tts": _dist_version("chatterbox-tts"),
        "transformers": _dist_version("transformers"),
        "numpy": _dist_version("numpy"),
        "ttsopt": _dist_version("ttsopt"),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "source": source,
    }
    return redact(env)


def _hf_token_files() -> list[Path]:
    # The places huggingface_hub reads and writes tokens.
    paths = [Path.home() / ".cache" / "huggingface"]
    if "XDG_CACHE_HOME" in os.environ:
        paths.append(Path(os.environ["XDG_CACHE_HOME"]) / "huggingface")
    if "HF_HOME" in os.environ:
        paths.append(Path(os.environ["HF_HOME"]))
    files = [p / name for p in paths for name in ("token", "stored_tokens")]
    if "HF_TOKEN_PATH" in os.environ:
        files.append(Path(os.environ["HF_TOKEN_PATH"]))
    return files


def _read_token_file(path: Path) -> set[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return set()
    if path.name != "stored_tokens":
        return {text.strip()}
    # stored_tokens is INI: one section per saved token, its value under hf_token.
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return set()
    return {parser[s].get("hf_token", "") for s in parser.sections()}


def secret_values() -> set[str]:
    """Values that must never appear in anything written: tokens, keys, passwords."""
    values = {
        value
        for name, value in os.environ.items()
        if any(part in name.upper() for part in _SECRET_NAME_PARTS)
    }
    for path in _hf_token_files():
        values |= _read_token_file(path)
    return {
        v
        for v in values
        if len(v) >= 4 and v.lower() not in _NOT_SECRETS and not v.isdigit()
    }


def _redact(obj, needles: list[str]):
    if isinstance(obj, str):
        for needle in needles:
            obj = obj.replace(needle, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {_redact(k, needles): _redact(v, needles) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_redact(v, needles) for v in obj)
    return obj


def redact(obj):
    """A copy of `obj` (dicts, lists, tuples, strings) with every secret replaced."""
    secrets = secret_values()
    # A secret with quotes or backslashes appears escaped inside JSON strings.
    needles = secrets | {json.dumps(s)[1:-1] for s in secrets}
    # Longest first, so a secret containing another is replaced whole.
    return _redact(obj, sorted(needles, key=len, reverse=True))
