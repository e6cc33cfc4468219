#!/usr/bin/env bash
# The GPU check: build the addon against a CUDA libtorch, run the engine tests, then
# `mcldef defend` on the authors' model on the GPU and on the CPU, and print the seconds
# and BA/ASR of both side by side. Run it on a machine with an NVIDIA GPU:
#
#   bash bench/device-check.sh [RESULTS_DIR]
#
# LIBTORCH: an unpacked CUDA libtorch; default: the one inside the installed PyTorch wheel
# (python3 -m pip install torch). The CPU build is restored at the end (npm run build:native).
# Data: ../shared (MCLDEF_SHARED to point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-device-check}
shared=${MCLDEF_SHARED:-../shared}
mkdir -p "$results"

if [ -z "${LIBTORCH:-}" ]; then
  LIBTORCH=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
fi
abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null || echo 1)
echo "device-check: libtorch $LIBTORCH (C++11 ABI $abi)"
restore() { env -u LIBTORCH npm run build:native >/dev/null 2>&1 || echo "device-check: restoring the CPU build failed: run npm run build:native"; }
trap restore EXIT
LIBTORCH="$LIBTORCH" LIBTORCH_CXX11_ABI="$abi" npm run build:native

node --import tsx -e "
  const { cudaDeviceCount, libtorchVersion } = await import('./src/engine/index.ts');
  const count = cudaDeviceCount();
  console.log('device-check: libtorch ' + libtorchVersion() + ', ' + count + ' CUDA device(s)');
  if (count === 0) process.exit(1);
"
npm test -- test/engine

run() { # device seed
  node --import tsx src/cli/main.ts defend --device "$1" --seed "$2" --quiet \
    --arch wrn-16-1 --weights "$shared/models/mcl-reference/WRN-16-1-badnet.pth.tar" \
    --data "cifar10:$shared/data/cifar10-jpeg" --attack badnets-grid --target 5 \
    --report-dir "$results/$1-seed$2" --json "$results/$1-seed$2.json" >"$results/$1-seed$2.log" 2>&1
}
run cuda 0
run cpu 0
node -e "
  const read = (name) => JSON.parse(require('fs').readFileSync('$results/' + name + '.json', 'utf8'));
  const gpu = read('cuda-seed0'), cpu = read('cpu-seed0');
  const row = (name, r) => console.log(name.padEnd(6), 'BA', r.after.ba.toFixed(2), 'ASR', r.after.asr.toFixed(2),
    'trigger', r.trigger.size, 'seconds: inversion', r.seconds.inversion.toFixed(1), 'purification',
    r.seconds.purification.toFixed(1), 'total', r.seconds.total.toFixed(1));
  row('cuda', gpu); row('cpu', cpu);
  console.log('speed-up (total):', (cpu.seconds.total / gpu.seconds.total).toFixed(2) + 'x');
"
