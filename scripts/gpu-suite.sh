#!/usr/bin/env bash
# gpu-suite.sh [PYTEST ARGS...] — the GPU suite (tests/gpu, marker `gpu`) on a GPU host.
#
# Needs: a TensorRT toolchain interpreter (default /opt/trt86/bin/python, built by ../shared/gpu/make-bundle
# and installed part by part with its host-setup; see ../shared/gpu/README.md):
#     bash .gpu/trt86/p0/host-setup add .gpu/trt86/p0
#     bash /opt/trt86/parts/host-setup add .gpu/trt86/pK        # K = 1 … 8, one transfer each
#     bash /opt/trt86/parts/host-setup finish
# and, for the worker's own Python (python3), the server/worker packages: either installed, or wheels in
# .whl/ (made on a networked machine with `pip download --no-deps --only-binary=:all: --python-version 3.12
# ...`), which this script installs into /tmp/site. Put trtfarm's own wheel there too (`pip wheel --no-deps
# -w .whl .`): its metadata registers the server commands (`trtfarm up`, `worker`: entry points), while the
# code is imported from this checkout, which comes first on PYTHONPATH.
#
# Environment (defaults): TRTFARM_TOOLCHAINS=tensorrt=/opt/trt86/bin/python,onnxruntime=python3
#   GPU_RESULTS=${OUT:-/tmp}/gpu-results.json   (figures; farm logs land beside it in farm-logs.txt)
#   CUDA_CACHE_DISABLE=1                         (the driver's JIT cache must not favour a second build)
#   GPU_BACKEND_PER_GPU=14 GPU_BACKEND_BUDGET_S=480 (ONNX backend cases: parallelism, time budget)
# With no arguments it runs every test in tests/gpu, timing-cache tests first (they need an empty partition).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ ! -f /tmp/site/.trtfarm-wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  touch /tmp/site/.trtfarm-wheels
fi
export PYTHONPATH="$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export TRTFARM_TOOLCHAINS="${TRTFARM_TOOLCHAINS:-tensorrt=/opt/trt86/bin/python,onnxruntime=python3}"
export GPU_RESULTS="${GPU_RESULTS:-${OUT:-/tmp}/gpu-results.json}"
export CUDA_CACHE_DISABLE="${CUDA_CACHE_DISABLE:-1}"
export PYTHONUNBUFFERED=1
if [ $# -eq 0 ]; then
  set -- tests/gpu/test_timing_cache.py tests/gpu/test_convnets.py tests/gpu/test_compat.py \
         tests/gpu/test_options.py tests/gpu/test_precisions.py tests/gpu/test_int8.py tests/gpu/test_plugins.py tests/gpu/test_fleet.py tests/gpu/test_onnx_backend.py tests/gpu/test_two_gpus.py tests/gpu/test_scaling.py
fi
nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader || true
exec python3 -m pytest -m gpu -v -p no:cacheprovider -o addopts="-ra --strict-markers" "$@"
