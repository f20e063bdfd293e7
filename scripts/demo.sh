#!/usr/bin/env bash
# The first command: checks what the build needs (installing it when run as root on Debian),
# builds tickflow (release) and runs `tickflow demo` with the arguments given.
#   scripts/demo.sh [--check] [demo flags...]
# --check only checks the prerequisites and says what is missing, without installing or
# building. The build shares its target directory with scripts/test.sh
# ($HOME/.cache/tickflow/target unless CARGO_TARGET_DIR is set), so the second command
# reuses the first one's compiled dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh

CHECK_ONLY=0
if [ "${1:-}" = --check ]; then
  CHECK_ONLY=1
  shift
fi
check_build_prereqs
install_or_explain || exit 1
if [ "$CHECK_ONLY" = 1 ]; then
  echo "everything the build of tickflow needs is installed"
  exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TICKFLOW_CACHE:-$HOME/.cache/tickflow}/target}"
echo "building tickflow (release; target dir $CARGO_TARGET_DIR); a first build takes long, see the README"
exec cargo run --release --locked -- demo "$@"
