#!/usr/bin/env bash
# A longer fuzzing run of the image decoder: seeds the corpus, then fuzzes for SECONDS
# (default 600) with 10 s per input. Findings land in fuzz/artifacts/ (crash-*, a
# MemoryError included: the harness caps its address space at 2 GB, so a memory blow-up
# names its input; timeout-*); reproduce one with
#   python fuzz/fuzz_decode.py fuzz/artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p fuzz/corpus fuzz/artifacts
"$python" fuzz/fuzz_decode.py --make-seeds fuzz/corpus
exec "$python" fuzz/fuzz_decode.py \
  -max_total_time="$seconds" -timeout=10 \
  -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 fuzz/corpus
