#!/usr/bin/env bash
# The full churn run of issue 16: 5,000 distinct Go processes under one agent, a few dozen at a time (CI runs
# 200 of them in test/robust/churn.test.ts). Prints the figures: processes per second, exit to probes gone.
#   bash scripts/churn.sh [processes] [at once]
set -euo pipefail
cd "$(dirname "$0")/.."
export CHURN_PROCESSES="${1:-5000}" CHURN_CONCURRENCY="${2:-24}"
npx --no-install tap --timeout 3600 test/robust/churn.test.ts 2>&1 | grep -E '^\s*(not )?ok |# churn figures|# \{'
