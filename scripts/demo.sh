#!/usr/bin/env bash
# The main job on one machine: set up, build the sample Go service, run it under its own load, and show what
# goroscope sees in it without restarting or changing it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/demo
(cd scripts/demo/sample-service && GOFLAGS=-buildvcs=false go build -o ../../../build/demo/sample-service .)
./build/demo/sample-service -rps 50 > build/demo/sample-service.log 2>&1 &
svc=$!
trap 'kill $svc 2>/dev/null || true' EXIT
sleep 2
echo "sample service pid $svc ($(head -n 1 build/demo/sample-service.log))"
node bin/goroscope.js snapshot --pid "$svc" --duration "${DURATION:-5s}"
