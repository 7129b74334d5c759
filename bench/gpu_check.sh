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

echo "== ingest, $images photos, 4 upload streams (strata index --streams 4) =="
mkdir -p "$out/streams-4"
STRATA_DEVICE_DECODE=auto "$python" bench/ingest.py --images "$images" --repeats 2 \
  --server-batch-size 256 --streams 4 --out "$out/streams-4" 2>&1 \
  | tee "$out/ingest-gpu-streams-4.log" | grep -v -i warn | tail -14

# GPU FAISS needs the GPU wheel in place of faiss-cpu (pip install faiss-gpu-cu12): then
# bench/search.py searches the service's index on the GPU (STRATA_DEVICE=cuda copies it).
if "$python" -c 'import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)'; then
  echo "== FAISS on the GPU: 1M x 1280, recall and QPS against the CPU index =="
  "$python" bench/search.py --device cuda --out "$out/search-gpu.json" 2>&1 | tail -12
else
  echo "FAISS here has no GPU support (faiss-cpu): GPU FAISS not measured"
fi
