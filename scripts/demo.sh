#!/usr/bin/env bash
# The main job on one machine: set up, then run the collector (SQLite file), the agent and a sample Go service
# under its own load, and show what goroscope sees, without restarting or changing the service.
#   DEMO_SECONDS=60 (how long to run)  OTLP_ENDPOINT=http://127.0.0.1:4318 (export spans, e.g. to Jaeger)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/demo
(cd scripts/demo/sample-service && GOFLAGS=-buildvcs=false go build -o ../../../build/demo/sample-service .)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

./build/demo/sample-service -rps 100 > build/demo/sample-service.log 2>&1 &
svc=$!; pids+=("$svc")

rm -f build/demo/goroscope.db*
node bin/goroscope.js collector --listen 127.0.0.1:7070 --db build/demo/goroscope.db --no-auth \
  ${OTLP_ENDPOINT:+--otlp-endpoint "$OTLP_ENDPOINT"} > build/demo/collector.log 2>&1 &
pids+=("$!")
for _ in $(seq 50); do curl -fsS http://127.0.0.1:7070/api/v1/readyz >/dev/null 2>&1 && break; sleep 0.2; done

node bin/goroscope.js agent --collector ws://127.0.0.1:7070 --pid "$svc" --spool-dir build/demo/spool \
  --metrics-listen 127.0.0.1:9464 --leak-min-age 10s > build/demo/agent.log 2>&1 &
pids+=("$!")

cat <<INFO
goroscope is running:
  sample service   pid $svc, $(head -n 1 build/demo/sample-service.log 2>/dev/null || echo starting)
  collector        http://127.0.0.1:7070/api/v1/openapi.json  (SQLite: build/demo/goroscope.db)
  agent metrics    http://127.0.0.1:9464/metrics
  live view        node bin/goroscope.js top --pid $svc
  logs             build/demo/*.log
INFO

seconds=${DEMO_SECONDS:-60}
for ((t = 10; t <= seconds; t += 10)); do
  sleep 10
  echo
  echo "== after ${t}s: goroutines by creation site (GET /api/v1/goroutines/summary?by=createdBy&state=waiting)"
  curl -fsS "http://127.0.0.1:7070/api/v1/goroutines/summary?by=createdBy&state=waiting&pid=$svc&limit=8" \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const g of JSON.parse(s).groups)console.log(String(g.live).padStart(6),g.createdBy?`${g.createdBy.function} ${g.createdBy.file}:${g.createdBy.line}`:"?")})' || true
  echo "== leak suspects (agent metrics)"
  curl -fsS http://127.0.0.1:9464/metrics | grep '^goroscope_leak_suspects' | head -5 || echo "  none yet"
done
