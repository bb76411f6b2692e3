#!/usr/bin/env bash
# The GPU half of the fast path's benchmark, for a lent device machine (see the device tool's
# README). Prepare here with scripts/gpu-wheels.sh, then call the tool's `run` with
#   carry [".whl"], command "bash scripts/gpu-bench.sh"
# Everything it writes goes under $OUT (default reports/gpu), which comes back:
#   env.txt (GPU, driver, versions), tests.log (the CUDA-only tests and the fast path's
#   tests on the GPU machine's CPU), bench/{bench.txt,bench.json,bench.png}.
# Weights are synthetic (full size, random): that machine reaches no hub. One step failing
# does not stop the next; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-reports/gpu}
mkdir -p "$OUT"
status=0
step() { "$@" || { rc=$?; echo "step failed ($rc): $*"; [ $status -ne 0 ] || status=$rc; }; }

PY=${PY:-python3}
if [ -z "${TTSOPT_NO_WHEELS:-}" ]; then  # set it where the packages are installed already
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed: run scripts/gpu-wheels.sh here and carry .whl"; exit 1; }
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TTSOPT_CACHE=/tmp/ttsopt-cache
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'device', torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/env.txt"

step bash -o pipefail -c "$PY -m pytest -q -p no:cacheprovider tests/test_timing_memory.py tests/test_fast.py tests/test_bench.py 2>&1 | tee '$OUT/tests.log'"
step $PY -m ttsopt bench --source synthetic --device cuda --trials 5 --stream --batch 8 --save "$OUT/bench"
exit $status
