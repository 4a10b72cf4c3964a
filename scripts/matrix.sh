#!/usr/bin/env bash
# The full Go version x build kind matrix of the lifecycle and inventory tests (Go 1.19 from Debian, 1.21-1.25
# through GOTOOLCHAIN, the machine's Go), printed at the end and written to build/go/matrix.md; then the
# runtime layout read from each table toolchain's DWARF, compared with the table; then the stack oracle (every
# goroutine's stack read from outside against the program's own runtime.Stack dump) on Go 1.19, 1.22, 1.26 and
# 1.27 x every build kind.
set -uo pipefail
cd "$(dirname "$0")/.."
GOROSCOPE_MATRIX=full npx --no-install tap --reporter=tap --timeout=3600 test/agent/lifecycle.test.ts | tee build/matrix.log | grep -E '^\s*#\s*(\||version x)|^# \{'
GOROSCOPE_MATRIX=full npx --no-install tap --reporter=tap --timeout=3600 test/gobinary/dwarf.test.ts | tee build/matrix-dwarf.log | grep -E '^\s*(not ok|# Go|# \{)|^# \{'
GOROSCOPE_MATRIX=full npx --no-install tap --reporter=tap --timeout=3600 test/stacks/oracle.test.ts | tee build/matrix-stacks.log | grep -E '^\s*(not ok|# Go|# stack)|^# \{'
