#!/usr/bin/env bash
# Issue 14's soak at full size: a million ticks over six hours of market time, the engine and
# the lake sink each SIGKILLed 20 times (some right after an hour boundary, some losing the
# engine's state), for the flagship topology and for hopping windows with updates; then every
# output counted once against a brute-force recomputation, the lake checked record by record,
# and `tickflow query`'s sums compared. Starts the same services as the test command. Takes
# about half an hour on two cores; `scripts/test.sh` runs the same tests at 40,000 ticks and 5 kills of each.
set -euo pipefail
cd "$(dirname "$0")/.."
export TICKFLOW_SOAK=1
exec bash scripts/test.sh --test integration -- soak:: --test-threads 1 "$@"
