#!/usr/bin/env bash
# GPU checks and the GPU ingest benchmark, in one go, for a machine with CUDA and PyTorch.
#   bash bench/gpu_check.sh [IMAGES]
# On a machine without this project's other packages, put their wheels in .whl/ first (see
# bench/README.md, "GPU"): they are installed to /tmp/site and put on PYTHONPATH.
# Figures land in $OUT (default bench/out): decode-*/ingest.json and the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/out}"
images="${1:-2048}"
mkdir -p "$out"
python=python3
if [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())'

echo "== GPU tests =="
"$python" -m pytest -q -p no:cacheprovider -m gpu tests/ 2>&1 | tee "$out/gpu-tests.log" | tail -8

for decode in auto off; do
  echo "== ingest, $images photos, STRATA_DEVICE_DECODE=$decode =="
  mkdir -p "$out/decode-$decode"
  STRATA_DEVICE_DECODE=$decode "$python" bench/ingest.py --images "$images" --repeats 2 \
    --server-batch-size 256 --out "$out/decode-$decode" 2>&1 \
    | tee "$out/ingest-gpu-decode-$decode.log" | grep -v -i warn | tail -14
done
