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


def bf16_units(flags: set[str]) -> list[str]:
    """The BF16_UNITS among CPU FLAGS, in BF16_UNITS' order: the one question the flow's, the
    attention's and the vocoder's precision choices ask of a CPU's flags."""
    return [f for f in BF16_UNITS if f in flags]


def proc_flags() -> set[str]:
    """Every feature flag /proc/cpuinfo lists for this CPU, whatever a cap holds torch to
    (`cpu_flags` for what torch may use); empty where there is no /proc."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass  # no /proc (macOS): nothing is known about the units
    return set()


# The environment that holds torch's CPU libraries to a narrower instruction set than the CPU has:
# ATen's own kernels, oneDNN (bfloat16 products, convolutions), MKL (float32 products) and fbgemm
# (int8). Set all four to AVX2 and an AVX-512 machine runs the kernels an AVX2 CPU would run
# (scripts/as-avx2.sh), which is how the AVX2 defaults can be worked on from an AVX-512 box; its
# clock and memory stay its own, so such numbers are never an AVX2 CPU's.
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "FBGEMM_ENABLE_INSTRUCTIONS")
_WIDE_FLAGS = ("avx512", "amx")  # prefixes of the flags an AVX2 or narrower cap takes away


def isa_cap() -> str | None:
    """The instruction set ATEN_CPU_CAPABILITY holds torch to, when it is narrower than AVX-512
    ('avx2', 'avx', 'default'); None when torch may use all the CPU has."""
    value = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return value if value in ("avx2", "avx", "default") else None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as torch may use them (avx2, avx512_bf16, amx_bf16, ...): the ones
    /proc lists, less the AVX-512 and AMX ones where ATEN_CPU_CAPABILITY caps torch below them
    (`isa_cap`); empty where /proc is absent."""
    flags = proc_flags()
    if isa_cap():
        flags = {f for f in flags if not f.startswith(_WIDE_FLAGS)}
    return flags


# The units that decide which kernels are fast here, widest first: one "AMD EPYC" may have AVX2
# only and another AVX-512 with bfloat16, and their numbers differ several-fold.
CPU_UNITS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512_vnni", "AVX512-VNNI"),
             ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_units(flags: set[str] | None = None) -> str | None:
    """The vector and matrix units of this CPU that matter for torch's kernels, e.g. 'AVX-512, AVX2';
    under a cap (`isa_cap`) also what the CPU has beyond it, so no record passes for another CPU's."""
    if flags is not None:
        return ", ".join(label for flag, label in CPU_UNITS if flag in flags) or None
    units = cpu_units(cpu_flags())
    cap = isa_cap()
    if cap is None:
        return units
    held = ", ".join(label for flag, label in CPU_UNITS if flag in proc_flags() - cpu_flags())
    return f"{units or 'no vector units known'}; capped: ATEN_CPU_CAPABILITY={cap}" + (f", not using {held}"
                                                                                      if held else "")


def isa_environment() -> dict[str, str]:
    """The ISA_ENV variables that are set, for the record."""
    return {name: os.environ[name] for name in ISA_ENV if name in os.environ}


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
        "isa_environment": isa_environment(),
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
