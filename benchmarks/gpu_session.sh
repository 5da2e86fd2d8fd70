#!/usr/bin/env bash
# Issue 27's GPU checks in one command, on a CUDA machine without internet (prepared here with
# `bash benchmarks/gpu_prepare.sh`):
#
#   bash benchmarks/gpu_session.sh OUT_DIR [BUDGET_S] [PARTS]
#
# Installs the wheels of .whl/ (if any) into a private folder on PYTHONPATH (nothing of the
# machine's own Python is changed), then runs `benchmarks/gpu_check.py --budget BUDGET_S`
# (default 480: the GPU tests, unetkit vs nnU-Net eager and compiled, the hippocampus-sized step
# and the loop around it, zero-config hippocampus training on .gpu_data/hippocampus if there,
# inference vs MONAI; PARTS: a comma-separated subset of them, e.g. `throughput` for the whole
# table with compiled nnU-Net in a second call). OUT_DIR receives gpu_check[_PARTS].json, its log
# and nvidia-smi.txt; the peers record of the training is copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:?usage: gpu_session.sh OUT_DIR [BUDGET_S] [PARTS]}
BUDGET=${2:-480}
PARTS=${3:-}
PY=${PY:-python3}
SITE=${SITE:-/tmp/unetkit-site}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || echo "nvidia-smi: not available" >> "$OUT_DIR/nvidia-smi.txt"

options=(--budget "$BUDGET")
[ -f .gpu_data/hippocampus/dataset.json ] && options+=(--hippocampus .gpu_data/hippocampus)
name=gpu_check
[ -n "$PARTS" ] && { options+=(--parts "$PARTS"); name="gpu_check_${PARTS//,/_}"; }
"$PY" benchmarks/gpu_check.py --json "$OUT_DIR/$name.json" "${options[@]}" \
  2>&1 | tee "$OUT_DIR/$name.log"
status=${PIPESTATUS[0]}
cp benchmarks/results/peers_hippocampus_gpu_check.json "$OUT_DIR/" 2>/dev/null || true
exit "$status"
