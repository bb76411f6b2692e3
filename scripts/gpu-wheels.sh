#!/usr/bin/env bash
# Download, into .whl/, the wheels the lent GPU machine's image lacks for `ttsopt bench` and the
# fast-path tests (that machine reaches no registry; its python3 is 3.12 with torch 2.11 cu130,
# numpy, pandas, seaborn, numba, einops, safetensors and nvidia-ml-py already there).
# (.whl/ is in .gitignore.) Then, with the device tool: carry [".whl"] and run scripts/gpu-bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# chatterbox-tts without its pins (see Makefile); the runtime needs pyproject.toml declares,
# less what the image has. The image's transformers (5.17) is used: the tests pass with it
# here, and carrying 5.24 (13.5 MB) would take the tree past the 64 MiB a call may carry.
wheels=(chatterbox-tts==0.1.7 diffusers==0.29.0
        librosa==0.11.0 audioread decorator pooch platformdirs soundfile==0.14.0 cffi pycparser soxr
        s3tokenizer==0.3.0 resemble-perth==1.0.1 conformer==0.3.2 omegaconf==2.4.0 antlr4-python3-runtime
        pyloudnorm==0.2.0 importlib-metadata)
mkdir -p .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${wheels[@]}"
du -sh .whl
