#!/usr/bin/env bash
# Builds the real OpenTelemetry receivers goroscope's tests export to, from the Go module proxy, into build/receivers/:
#   jaeger   Jaeger v2 (module github.com/jaegertracing/jaeger v1.76.0, cmd/jaeger): OTLP in, its query API out
#            (built from modules it has no UI). Its go.mod has a replace directive, so `go install ...@v` cannot
#            build it: the module is downloaded, copied, and built in place.
#   otelcol  the OpenTelemetry Collector with the otlp receiver and the file exporter, built by the OpenTelemetry
#            Collector Builder from scripts/receivers/otelcol-manifest.yaml.
# Usage: bash scripts/receivers/build.sh [jaeger] [otelcol]   (default: both); prints each binary's path.
# A built binary is reused. The first build takes minutes (Jaeger ~7 min on a quiet machine, ~30 with a cold module
# cache on a busy one); later builds, also from a fresh clone, are quick: Go's module and build caches keep the work.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/receivers
mkdir -p "$out"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-local}
JAEGER_VERSION=v1.76.0
BUILDER_VERSION=v0.140.0

build_jaeger() {
  local bin=$out/jaeger-$JAEGER_VERSION
  if [ ! -x "$bin" ]; then
    echo "receivers: building Jaeger $JAEGER_VERSION from the Go module proxy (minutes the first time)" >&2
    local dir
    dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir" ] || { echo "receivers: go mod download gave no directory for jaeger@$JAEGER_VERSION" >&2; exit 1; }
    rm -rf "$out/jaeger-src"
    cp -r "$dir" "$out/jaeger-src"
    chmod -R u+w "$out/jaeger-src"
    (cd "$out/jaeger-src" && go build -o "../jaeger-$JAEGER_VERSION.tmp" ./cmd/jaeger)
    mv "$bin.tmp" "$bin"
    rm -rf "$out/jaeger-src"
  fi
  echo "$bin"
}

build_otelcol() {
  local manifest=scripts/receivers/otelcol-manifest.yaml
  local bin=$out/otelcol
  if [ ! -x "$bin" ] || [ "$manifest" -nt "$bin" ]; then
    echo "receivers: building the OpenTelemetry Collector (otlp receiver, file exporter) with ocb $BUILDER_VERSION" >&2
    GOBIN="$PWD/$out/bin" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
    rm -rf "$out/otelcol-src"
    # The builder's own `go mod tidy` also resolves the components' test imports, one of which the module proxy
    # does not serve (otlpencodingextension@v0.140.1): generate only, then tidy past that error and build.
    "$out/bin/builder" --config "$manifest" --skip-get-modules --skip-compilation >/dev/null
    (cd "$out/otelcol-src" && go mod tidy -e 2>/dev/null; go build -trimpath -o ../otelcol.tmp .)
    mv "$out/otelcol.tmp" "$bin"
    rm -rf "$out/otelcol-src"
  fi
  echo "$bin"
}

# One build at a time: a test that asks for a receiver while .ci/run builds it in the background waits for it.
exec 9>"$out/.lock"
flock 9

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jaeger otelcol)
for t in "${targets[@]}"; do
  case "$t" in
    jaeger) build_jaeger ;;
    otelcol) build_otelcol ;;
    *) echo "receivers: unknown receiver '$t' (jaeger, otelcol)" >&2; exit 2 ;;
  esac
done
