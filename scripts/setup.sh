#!/usr/bin/env bash
# Installs what a fresh machine needs, then builds the BPF objects and the native bridge.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the BPF toolchain (clang, llvm, bpftool), libbpf and what it links with, Go 1.19 for the
# version matrix, and the tools the tests and benchmarks drive (iproute2 for netns/veth/netem, wrk for load,
# promtool from prometheus to check the metrics and alert rules).
packages=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make gcc g++ pkg-config golang-1.19-go iproute2 wrk util-linux prometheus)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Go toolchain for the tests' Go programs: the machine's own (1.21+ fetches others through GOTOOLCHAIN),
# else Debian's 1.19.
if ! command -v go >/dev/null; then
  echo "setup: no go on PATH; using Debian's Go 1.19 as the machine's Go"
  ln -sf /usr/lib/go-1.19/bin/go /usr/local/bin/go
fi

# npm packages. Native addons (better-sqlite3, ours) build against the Node headers on this machine,
# never a header download.
export npm_config_nodedir=/usr
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (native addons build against this machine's Node headers; a few minutes the first time)"
  npm ci --no-audit --no-fund --loglevel=error
fi

make -C bpf
# The bridge is rebuilt when any of its sources is newer than it. It knows no record: the agent's layouts are
# generated from the objects' BTF (npm run gen:bpf), and test/bpf/layout.test.ts says when they are not current.
bridge=agent/native/build/Release/goroscope_bridge.node
bridge_stale() {
  [ -f "$bridge" ] || return 0
  for f in agent/native/*.c agent/native/*.h agent/native/binding.gyp; do [ "$f" -nt "$bridge" ] && return 0; done
  return 1
}
if bridge_stale; then
  (cd agent/native && npx --no-install node-gyp rebuild --nodedir=/usr >/dev/null)
fi
# The bundle bin/goroscope.js runs (starts in ~0.1 s; the TypeScript sources through tsx take seconds).
npm run --silent build:js
# The calibration ping-pong the agent runs to measure what a probe hit costs on this node.
if [ ! -x build/calibrate/pingpong ] || [ agent/calibrate/pingpong/main.go -nt build/calibrate/pingpong ]; then
  (cd agent/calibrate/pingpong && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -o ../../../build/calibrate/pingpong .)
fi
echo "setup: ready (bpf/.output/*.bpf.o, agent/native/build/Release/goroscope_bridge.node, dist/goroscope.mjs)"
