#!/usr/bin/env bash
# Installs the system packages mcldef needs on Debian/Ubuntu (idempotent; skips what is there):
# libtorch-dev (the engine), libjpeg-dev (libjpeg-turbo, JPEG datasets), g++/make/python3 (node-gyp), python3-torch (PyTorch comparisons
# in tests and benchmarks), redis-server (the queue of `mcldef bench --queue`; tests start their own). Node.js >= 20 must already be installed (Debian 12 ships 18:
# use NodeSource or nvm).
set -euo pipefail

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
[ -f /usr/include/ATen/ATen.h ] || missing+=(libtorch-dev)
[ -f /usr/include/jpeglib.h ] || missing+=(libjpeg-dev)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[ -x /usr/bin/python3 ] || missing+=(python3)
if ! /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then missing+=(python3-torch); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "mcldef setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "mcldef setup: system packages already present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "mcldef setup: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi
