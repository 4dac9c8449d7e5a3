#!/usr/bin/env bash
# On an offline GPU host with torch/triton/transformers preinstalled: make this checkout importable,
# install the carried wheels (.whl/, see ../shared/tools/offline_wheels.sh), then run the GPU tests
# and/or the benchmark report. Usage: scripts/gpu_host_run.sh OUT_DIR [tests] [bench STAGES] [offline N]
set -uo pipefail
out=${1:?output dir}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$root"/.whl/*.whl || exit 1
fi
# The package maps lang/ and runtime/ into sglang_nb (setup.py); links in this copy do the same.
ln -sfn ../runtime "$root/sglang_nb/runtime"
ln -sfn ../lang "$root/sglang_nb/lang"
export PYTHONPATH=$root:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
while (($#)); do
  case $1 in
    tests) (cd "$root" && timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -m gpu -p no:cacheprovider \
              tests/runtime/gpu 2>&1 | tee "$out/gpu_tests.log" | tail -40); shift ;;
    bench) timeout "${BENCH_TIMEOUT:-330}" python3 "$root/benchmarks/gpu_report.py" --out "$out" --stages "$2" \
              2>&1 | tee "$out/bench.log" | grep -v "^\[" | tail -60; shift 2 ;;
    offline) timeout "${OFFLINE_TIMEOUT:-420}" python3 "$root/benchmarks/gpu_report.py" --out "$out" \
              --stages offline --num-prompts "$2" 2>&1 | tee "$out/offline.log" | tail -30; shift 2 ;;
    *) echo "unknown step $1"; exit 2 ;;
  esac
done
