#!/usr/bin/env bash
# Tests of the first command's prerequisite check (scripts/demo.sh --check): it passes on this
# machine, and with libclang hidden it fails at once, names libclang and prints the install
# line. Run by scripts/test.sh before the build.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1" >&2; failed=$((failed + 1)); }

if out=$(scripts/demo.sh --check 2>&1); then
  ok "the check passes where everything is installed"
else
  fail "the check failed on this machine: $out"
fi

# A PATH holding only what the script and the other checks use, without llvm-config, and
# no directory that holds libclang.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/empty"
# libclang-cpp (LLVM's C++ library, installed with other packages) is not libclang: a fresh
# Debian machine that had only it passed the check and then failed the RocksDB build.
touch "$tmp/empty/libclang-cpp.so.14"
for tool in bash dirname id cc c++ pkg-config cargo; do
  path=$(command -v "$tool") && ln -s "$path" "$tmp/bin/$tool"
done
started=$(date +%s%N)
out=$(env LIBCLANG_PATH= TICKFLOW_LIBCLANG_DIRS="$tmp/empty" PATH="$tmp/bin" scripts/demo.sh --check 2>&1)
rc=$?
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
if [ $rc -eq 1 ]; then ok "without libclang the check exits 1"; else fail "exit code $rc without libclang"; fi
case "$out" in
  *"libclang (RocksDB's bindings"*) ok "it names libclang" ;;
  *) fail "libclang is not named: $out" ;;
esac
case "$out" in
  *"apt-get install -y libclang-dev"*) ok "it prints the install line" ;;
  *) fail "no install line: $out" ;;
esac
case "$out" in
  *"libssl-dev"* | *"g++"*) fail "it names what is installed: $out" ;;
  *) ok "it names nothing that is installed" ;;
esac
echo "the check took ${took_ms} ms"
if [ "$took_ms" -lt 5000 ]; then ok "it stops without building"; else fail "it took ${took_ms} ms"; fi

echo "first command check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
