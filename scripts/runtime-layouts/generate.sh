#!/bin/sh
# Regenerates agent/src/gobinary/runtime-layouts.json for every Go version goroscope supports.
# Usage: scripts/runtime-layouts/generate.sh [VERSION...]   (default: the list below)
# A version is local, 1.19 (Debian's golang-1.19-go) or 1.N.P (fetched through GOTOOLCHAIN).
# When adding a Go release, put the newest patch of its minor here: go list -m -versions golang.org/toolchain
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../../agent/src/gobinary/runtime-layouts.json"
if [ "$#" -eq 0 ]; then
  set -- 1.19 1.20.14 1.21.13 1.22.12 1.23.12 1.24.13 1.25.14 1.26.11 1.27.4
fi
cd "$here"
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go run . -out "$out" "$@"
