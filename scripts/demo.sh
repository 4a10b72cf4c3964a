#!/usr/bin/env bash
# The main job on one machine: set up, then run the collector (SQLite file), the agent and a sample Go service
# under its own load, and show what goroscope sees, without restarting or changing the service.
#   DEMO_SECONDS=60 (how long to run)  OTLP_ENDPOINT=http://127.0.0.1:4318 (export spans, e.g. to Jaeger)
# Fails loudly: if the collector or the agent dies, or nothing reaches the collector, it says why and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/demo
(cd scripts/demo/sample-service && GOFLAGS=-buildvcs=false go build -o ../../../build/demo/sample-service .)

declare -A pid_of=()
cleanup() { for p in "${pid_of[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# A part that died takes the demo with it, with the end of its log as the reason.
die() {
  echo "demo: $1" >&2
  [ -n "${2:-}" ] && [ -f "$2" ] && { echo "--- last lines of $2:" >&2; tail -n 15 "$2" >&2; }
  exit 1
}
check_alive() {
  for name in "${!pid_of[@]}"; do
    kill -0 "${pid_of[$name]}" 2>/dev/null || die "the $name exited" "build/demo/$name.log"
  done
}

./build/demo/sample-service -rps 100 > build/demo/sample-service.log 2>&1 &
svc=$!; pid_of[sample-service]=$svc

rm -f build/demo/goroscope.db*
node bin/goroscope.js collector --listen 127.0.0.1:0 --db build/demo/goroscope.db --no-auth \
  ${OTLP_ENDPOINT:+--otlp-endpoint "$OTLP_ENDPOINT"} > build/demo/collector.log 2>&1 &
pid_of[collector]=$!
# The collector prints its URL (port 0: any free port) as its first line.
url=
for _ in $(seq 100); do
  check_alive
  url=$(grep -o '"url":"[^"]*"' build/demo/collector.log 2>/dev/null | head -n 1 | cut -d'"' -f4) && [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || die "the collector did not start within 10 s" build/demo/collector.log
api="$url/api/v1"

node bin/goroscope.js agent --collector "${url/http/ws}" --pid "$svc" --spool-dir build/demo/spool \
  --metrics-listen 127.0.0.1:0 --leak-min-age 10s --trace-interval 10s --node demo > build/demo/agent.log 2>&1 &
pid_of[agent]=$!
metrics=
for _ in $(seq 300); do
  check_alive
  metrics=$(grep -o 'metrics on http://[^ ]*' build/demo/agent.log | head -n 1 | cut -d' ' -f3) || true
  grep -q "tracing pid $svc" build/demo/agent.log && [ -n "$metrics" ] && break
  sleep 0.1
done
grep -q "tracing pid $svc" build/demo/agent.log || die "the agent is not tracing the sample service after 30 s" build/demo/agent.log

cat <<INFO
goroscope is running:
  sample service   pid $svc, $(head -n 1 build/demo/sample-service.log)
  collector API    $api  (OpenAPI: $api/openapi.json; SQLite: build/demo/goroscope.db)
                   e.g. curl '$api/goroutines/summary?by=createdBy&pid=$svc'
  agent metrics    ${metrics:-none}
  live view        node bin/goroscope.js top --pid $svc
  one snapshot     node bin/goroscope.js snapshot --pid $svc
  logs             build/demo/*.log
INFO
if [ -n "${OTLP_ENDPOINT:-}" ]; then
  echo "  traces           exported to $OTLP_ENDPOINT: search service 'sample-service' in Jaeger or Grafana (Tempo);"
  echo "                   a unit of work per request, long-lived goroutines every 10 s (--trace-interval), leak suspects"
fi
sed -n 's/^goroscope agent: //p' build/demo/agent.log | grep -E '^no |^not tracing|cannot' | sed 's/^/  agent: /' || true

seconds=${DEMO_SECONDS:-60}
seen=0
for ((t = 10; t <= seconds; t += 10)); do
  sleep 10
  check_alive
  echo
  echo "== after ${t}s"
  if node scripts/demo/report.mjs "$api" "${metrics:-http://127.0.0.1:1/metrics}" "$svc" ${OTLP_ENDPOINT:+"$url/metrics"}; then seen=1; fi
done
[ "$seen" = 1 ] || die "the collector received no goroutines from the agent in ${seconds}s" build/demo/agent.log
if [ -n "${OTLP_ENDPOINT:-}" ]; then
  exported=$(curl -s "$url/metrics" | sed -n 's/^goroscope_collector_export_spans_total \([0-9]*\)$/\1/p')
  [ "${exported:-0}" -gt 0 ] || die "no span reached $OTLP_ENDPOINT in ${seconds}s" build/demo/collector.log
fi
echo
echo "demo: done (the collector's database stays in build/demo/goroscope.db)"
