#!/usr/bin/env bash
# The full churn run of issue 16: 5,000 distinct Go processes under one agent, a few dozen at a time (CI runs
# 200 of them in test/robust/churn.test.ts). Prints the figures: processes per second, exit to probes gone, and
# what went wrong if anything did (the whole tap output is kept in build/churn.log).
#   bash scripts/churn.sh [processes] [at once]
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
export CHURN_PROCESSES="${1:-5000}" CHURN_CONCURRENCY="${2:-24}"
npx --no-install tap --timeout 3600 test/robust/churn.test.ts > build/churn.log 2>&1
status=$?
grep -E '^\s*(not )?ok |# (churn figures|not traced|late|map):|# \{' build/churn.log
exit $status
