#!/usr/bin/env bash
# The Go version x build kind matrix of the lifecycle and inventory tests, printed at the end and written to
# build/go/matrix.md; then the runtime layout read from each toolchain's DWARF, compared with the table; then the
# stack oracle (every goroutine's stack read from outside against the program's own runtime.Stack dump) on
# Go 1.19, 1.22, 1.26 and 1.27 x every build kind (its CI cells when versions are named); then the server request
# probes (test/http/requests.test.ts) and net/http's stripped-binary table (test/http/http-layouts.test.ts) on every
# toolchain from Go 1.22 (the fixture's ServeMux patterns), or on the named versions.
# Usage: scripts/matrix.sh            every toolchain of the layout table (Go 1.19 from Debian, 1.20+ through
#                                     GOTOOLCHAIN) and the machine's own Go
#        scripts/matrix.sh 1.27.4     every build kind of the named versions (comma-separated)
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
export GOROSCOPE_MATRIX="${1:-full}"
npx --no-install tap --reporter=tap --timeout=3600 test/agent/lifecycle.test.ts | tee build/matrix.log | grep -E '^\s*#\s*(\||version x)|^# \{'
npx --no-install tap --reporter=tap --timeout=3600 test/gobinary/dwarf.test.ts | tee build/matrix-dwarf.log | grep -E '^\s*(not ok|# Go|# \{)|^# \{'
npx --no-install tap --reporter=tap --timeout=3600 test/stacks/oracle.test.ts | tee build/matrix-stacks.log | grep -E '^\s*(not ok|# Go|# stack)|^# \{'
HTTP_TEST_GO="${1:-all}" HTTP_LAYOUT_TEST_GO="${1:-all}" npx --no-install tap --reporter=tap --timeout=3600 test/http/requests.test.ts test/http/http-layouts.test.ts | tee build/matrix-http.log | grep -E '^\s*(not ok|# toolchain)|^# \{'
