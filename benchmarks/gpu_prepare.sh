#!/usr/bin/env bash
# Prepare this checkout for a GPU machine that has torch but no internet (issue 27's checks).
#
#   bash benchmarks/gpu_prepare.sh [HIPPOCAMPUS_DIR]
#
# 1. Downloads, into .whl/, the wheels unetkit and the peers need that such an image lacks
#    (nibabel, pydantic with pydantic-core, annotated-types and typing-inspection; MONAI;
#    nnU-Net v2 and dynamic-network-architectures for gpu_bench's nnU-Net rows), at the versions
#    of this checkout's .venv (nnU-Net: NNUNET_VERSION), built for the GPU machine's Python
#    (GPU_PYTHON, default 3.12) on manylinux x86-64, without their dependencies (torch, numpy
#    and the like are there already).
# 2. Copies HIPPOCAMPUS_DIR (default ../shared/data/hippocampus) into .gpu_data/hippocampus so
#    that it travels with the checkout.
# Both folders are listed in .git/info/exclude: they are never committed.
# On the GPU machine, `bash benchmarks/gpu_session.sh OUT_DIR` installs the wheels into
# /tmp/site and runs the checks.
set -euo pipefail
cd "$(dirname "$0")/.."

GPU_PYTHON=${GPU_PYTHON:-3.12}
NNUNET_VERSION=${NNUNET_VERSION:-2.8.1}
VENV_PY=${VENV_PY:-.venv/bin/python}
DATA=${1:-../shared/data/hippocampus}

mkdir -p .git/info .whl
for path in /.whl/ /.gpu_data/; do
  grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done

# name==version as installed here (the versions the test suite ran with)
version_of() {
  "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}
wanted=()
for name in nibabel pydantic pydantic_core annotated-types typing-inspection monai \
            dynamic_network_architectures; do
  wanted+=("$name==$(version_of "$name")")
done
wanted+=("nnunetv2==$NNUNET_VERSION")

platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
rm -f .whl/*.whl .whl/*.tar.gz
for spec in "${wanted[@]}"; do
  # one at a time: a pure-Python package without a wheel comes as an sdist, built here
  if ! "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: \
        --python-version "$GPU_PYTHON" --implementation cp "${platforms[@]}" -d .whl "$spec"; then
    "$VENV_PY" -m pip wheel -q --no-deps -w .whl "$spec"
  fi
done
echo "wheels in .whl/:"
ls -1 .whl
du -sh .whl

if [ -f "$DATA/dataset.json" ]; then
  rm -rf .gpu_data/hippocampus
  mkdir -p .gpu_data
  cp -r "$DATA" .gpu_data/hippocampus
  echo "data: .gpu_data/hippocampus ($(du -sh .gpu_data/hippocampus | cut -f1))"
else
  echo "no hippocampus data at $DATA: the zero-config training part will be skipped"
fi
