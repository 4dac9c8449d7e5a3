#!/usr/bin/env bash
# On an offline GPU host with torch/triton/transformers preinstalled: make this checkout importable,
# install the carried wheels (.whl/, see ../shared/tools/offline_wheels.sh; a flashinfer wheel there
# enables the flashinfer backend), then run steps in order:
#
#   scripts/gpu_host_run.sh OUT_DIR [warm] [tests] [pytest "ARGS"] [bench STAGES] [variants LIST]
#                                   [gemv] [offline N] [waitwarm] [savecache]
#
#   warm          compile the FlashInfer modules in the background (scripts/flashinfer_warm.py)
#   tests         pytest -m gpu tests/runtime/gpu;  pytest "ARGS": the same with other arguments
#   bench STAGES  benchmarks/gpu_report.py stages (roofline,one_batch,hf,offline), table in report.md
#   variants LIST one_batch per variant, e.g. triton,triton:cublas,flashinfer (":cublas": no GEMV path)
#   gemv          one-row matmul bandwidth, cuBLAS against the GEMV kernels
#   savecache     FlashInfer JIT and Triton caches as OUT_DIR/*.tgz; put them in .gpu_cache/ and carry
#                 that folder to skip the compiles next time
#
# Results go to OUT_DIR/work/ and are packed into OUT_DIR/results.tgz after every step (a run cut
# short still returns what it finished). DEADLINE_S (default 570) skips steps once time is short.
set -uo pipefail
out=${1:?output dir}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
work="$out/work"
mkdir -p "$work"
t_start=$SECONDS
deadline=${DEADLINE_S:-570}
if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$root"/.whl/*.whl || exit 1
fi
# The package maps lang/ and runtime/ into sglang_nb (setup.py); links in this copy do the same.
ln -sfn ../runtime "$root/sglang_nb/runtime"
ln -sfn ../lang "$root/sglang_nb/lang"
export PYTHONPATH=$root:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export FLASHINFER_WORKSPACE_BASE=/tmp/fiws TRITON_CACHE_DIR=/tmp/triton_cache
mkdir -p "$FLASHINFER_WORKSPACE_BASE" "$TRITON_CACHE_DIR"
for c in fi_jit triton; do
  [ -f "$root/.gpu_cache/$c.tgz" ] && tar xzf "$root/.gpu_cache/$c.tgz" -C / 2>/dev/null && echo "restored $c cache"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$work/device.txt"
pack() { tar czf "$out/results.tgz" -C "$work" . 2>/dev/null; cp -f "$work/report.md" "$out/" 2>/dev/null; true; }
left() { echo $((deadline - (SECONDS - t_start))); }
step_timeout() { local want=$1 l; l=$(left); ((l < want)) && want=$l; echo $((want > 5 ? want : 5)); }
warm_pid=""
while (($#)); do
  echo "=== step $1 at $((SECONDS - t_start)) s ==="
  if (($(left) < 20)) && [ "$1" != savecache ]; then echo "skipping $1: out of time"; shift; continue; fi
  case $1 in
    warm) python3 "$root/scripts/flashinfer_warm.py" >"$work/warm.log" 2>&1 & warm_pid=$!; shift ;;
    waitwarm) [ -n "$warm_pid" ] && timeout "$(step_timeout 300)" tail --pid="$warm_pid" -f /dev/null; tail -5 "$work/warm.log"; shift ;;
    tests) (cd "$root" && timeout "$(step_timeout 560)" python3 -m pytest -q -m gpu -p no:cacheprovider \
              tests/runtime/gpu 2>&1 | tee "$work/gpu_tests.log" | tail -40); shift ;;
    pytest) (cd "$root" && eval timeout "$(step_timeout 300)" python3 -m pytest -q -p no:cacheprovider "$2" 2>&1 \
              | tee -a "$work/gpu_tests.log" | tail -40); shift 2 ;;
    bench) timeout "$(step_timeout 330)" python3 "$root/benchmarks/gpu_report.py" --out "$work" --stages "$2" \
              2>&1 | tee -a "$work/bench.log" | grep -v "^\[" | tail -60; shift 2 ;;
    variants)
      for v in ${2//,/ }; do
        backend=${v%%:*}; tag="_${v//:/_}"; gemv=1; [[ $v == *:cublas ]] && gemv=0
        SGLANG_NB_DECODE_GEMV=$gemv timeout "$(step_timeout 150)" python3 "$root/benchmarks/gpu_report.py" \
          --out "$work" --stage one_batch --attention-backend "$backend" --tag "$tag" >>"$work/variants.log" 2>&1
        echo "variant $v: exit $?"; pack
      done
      python3 "$root/benchmarks/gpu_report.py" --out "$work" --stages "" 2>&1 | tail -12; shift 2 ;;
    gemv) timeout "$(step_timeout 120)" python3 "$root/benchmarks/gpu_gemv_bench.py" --json "$work/gemv.json" 2>&1 \
              | tee "$work/gemv.log"; shift ;;
    offline) timeout "$(step_timeout 420)" python3 "$root/benchmarks/gpu_report.py" --out "$work" \
              --stages offline --num-prompts "$2" 2>&1 | tee "$work/offline.log" | tail -30; shift 2 ;;
    savecache)
      tar czf "$out/fi_jit.tgz" "$FLASHINFER_WORKSPACE_BASE" 2>/dev/null
      tar czf "$out/triton.tgz" "$TRITON_CACHE_DIR" 2>/dev/null
      ls -la "$out"; shift ;;
    *) echo "unknown step $1"; exit 2 ;;
  esac
  pack
done
pack
