#!/bin/bash
# The check to run first on any machine with a GPU: CUDA tests, compute-sanitizer on a reduced
# batch, the GPU-against-CPU agreement tests, bench_gpu, and a stated fraction of the full
# sweep, with everything written into one folder a person can copy back.
#   [OUT=dir] [SHARD=k/N] [PEAK_TFLOPS=x] bench/gpu_check.sh
# Run from the project root. Uses build/ when it holds the CUDA tests (a carried build),
# otherwise configures and builds it (source .deps/unpack-deps.sh first where the Debian
# packages were carried). Without a visible GPU it says so in one line and exits 0.
set -uo pipefail
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu_check: no GPU visible (nvidia-smi lists none); nothing to check"
  exit 0
fi
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
out=${OUT:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}
shard=${SHARD:-1/32}
mkdir -p "$out"
log="$out/log.txt"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
# step NAME LIMIT_SECONDS COMMAND...: runs it with its output in the log, notes status and time.
step() {
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*" >> "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  rc=$?
  note "$name: exit $rc, $(( $(date +%s) - t0 )) s"
  return $rc
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
} > "$out/device.txt" 2>&1
note "device: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), commit $(git rev-parse --short HEAD 2>/dev/null)"

if [ ! -x build/tests/test_cuda ] || [ ! -x build/tests/test_device_math ] || [ ! -x build/gpu-sweep ] || [ ! -f build/libgpusweep_cuda.so ]; then
  step build 420 bash -c "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j $(nproc)" ||
    { note "build failed: see $log"; exit 1; }
fi

# The CUDA tests (the network math on the device, assembly, solves, one step, statistical
# runs, slopes, memory, NTK).
step device-math-tests 60 build/tests/test_device_math --gtest_output="xml:$out/test_device_math.xml"
step cuda-tests 240 build/tests/test_cuda --gtest_output="xml:$out/test_cuda.xml"
step ntk-cuda-tests 120 build/tests/test_ntk_cuda --gtest_output="xml:$out/test_ntk_cuda.xml"

# compute-sanitizer on small systems (sizes up to 441): both Cholesky paths, one scratch round
# and several, failed factorizations inside a size group, the host work lists against the
# device's count, the general assembly from Jacobian rows (silu on 2 inputs), and the host
# solver's gather and scatter copies.
if command -v compute-sanitizer >/dev/null 2>&1; then
  small='Cuda.FailedFactorizationInsideASizeGroup:Cuda.HostWorkListsMatchTheDeviceCount'
  small+=':Backends/AnyBackend.GradientIsTheDerivativeOfItsOwnLoss/cuda_sin_sin_silu'
  step memcheck 180 compute-sanitizer --tool memcheck --error-exitcode 3 \
      build/tests/test_cuda --gtest_filter="$small:Cuda.SolverHostHalfActsOnTheDeviceSystems"
  step racecheck 180 compute-sanitizer --tool racecheck --error-exitcode 3 \
      build/tests/test_cuda --gtest_filter="$small"
else
  note "compute-sanitizer: not found on PATH; skipped"
fi

# Newton steps per second on both backends, assembly FLOP/s, the Cholesky path table; no full
# sweep here. The table's last line gives the --cholesky rules measured on this card.
step bench-gpu 300 build/bench/bench_gpu 10000 "${PEAK_TFLOPS:-0}" 0
sed -n '/^== bench-gpu/,$p' "$log" > "$out/bench_gpu.txt"
cholesky=$(sed -n 's/^measured --cholesky \([^ ]*\) .*/\1/p' "$out/bench_gpu.txt" | tail -n 1)
if [ -n "$cholesky" ]; then
  note "Cholesky paths measured here: --cholesky $cholesky (kDefaultCholesky in kernels/cuda_plan.cpp holds the default)"
else
  cholesky=auto
  note "Cholesky paths: no measured table (see bench_gpu.txt); the sweep uses --cholesky auto"
fi

# A stated fraction of the full sweep (--shard k/N, balanced by cost); its time times N
# estimates the whole.
t0=$(date +%s)
if step sweep-shard 300 build/gpu-sweep --widths 1:200 --seeds 32 --shard "$shard" --device cuda \
     --cholesky "$cholesky" --no-plots --overwrite --out "$out/sweep"; then
  secs=$(( $(date +%s) - t0 ))
  n=${shard#*/}
  note "full sweep --widths 1:200 --seeds 32 --cholesky $cholesky: shard $shard took $secs s; estimate for all $n shards: $(( secs * n )) s"
  cp "$out/sweep/results.csv" "$out/sweep_results.csv" 2>/dev/null
fi

note "everything is in $out (log.txt, summary.txt, device.txt, test XML, bench_gpu.txt, sweep_results.csv)"
