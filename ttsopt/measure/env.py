"""What a result was measured on.

`capture()` names exactly the facts a reader needs to reproduce or distrust a number; it
never copies environment variables wholesale, because that is where tokens live.
"""

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from ..core.secrets import redact


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or None


BF16_UNITS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bfloat16 arithmetic
FP16_UNITS = ("avx512_fp16", "amx_fp16")  # and of native float16


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx2, avx512_bf16, amx_bf16, ...); empty where /proc is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass  # no /proc (macOS): nothing is known about the units
    return set()


# The units that decide which kernels are fast here, widest first: one "AMD EPYC" may have AVX2
# only and another AVX-512 with bfloat16, and their numbers differ several-fold.
CPU_UNITS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512_vnni", "AVX512-VNNI"),
             ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_units(flags: set[str] | None = None) -> str | None:
    """The vector and matrix units of this CPU that matter for torch's kernels, e.g. 'AVX-512, AVX2'."""
    flags = cpu_flags() if flags is None else flags
    return ", ".join(label for flag, label in CPU_UNITS if flag in flags) or None


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


def capture(source: str | None = None, model: str | None = None) -> dict:
    """The environment of this process; `source` is where the weights came from, `model` which
    Chatterbox they are."""
    gpu_name, gpu_driver = _gpu()
    commit = _git("rev-parse", "HEAD")
    # Untracked files (results, reports) do not change the code that ran.
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    env = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_units": cpu_units(),
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
        "model": model,
    }
    return redact(env)
