#!/usr/bin/env bash
# Checks the container image as far as a machine without a Docker engine can:
#  1. lint: the manifest, lock file and benchmark targets are inside paths the build stage
#     copies, the .dockerignore keeps none of them out, and the runtime stage has what operators rely on
#     (non-root user, metrics on 0.0.0.0:9464, volumes, HEALTHCHECK, STOPSIGNAL);
#  2. inputs: every file the compiler read for the release binary (its dep-info file) is
#     inside a path the build stage copies and not kept out by .dockerignore;
#  3. run: that binary runs as the image runs it, as an unprivileged user in a copy of the
#     image's /app (config, schemas, topologies, queries read-only; state and lake writable):
#     a short `tickflow demo`, then `tickflow run` of the flagship topology with its lake.
# Usage: scripts/check-image.sh   (after the release build of scripts/test.sh; builds the binary if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TICKFLOW_CACHE:-$HOME/.cache/tickflow}/target}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tickflow-image.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "image check: $*" >&2; exit 1; }

# --- 1. lint --------------------------------------------------------------------------------
build_stage=$(awk '/^FROM .* AS build/{b=1; next} /^FROM /{b=0} b' Dockerfile)
runtime_stage=$(awk '/^FROM /{n++} n==2' Dockerfile)
copied=$(printf '%s\n' "$build_stage" | awk '$1=="COPY" && $2 !~ /^--from/ {for (i=2; i<NF; i++) print $i}')
[ -n "$copied" ] || fail "no COPY in the build stage"
is_copied() { # path
  local c
  for c in $copied; do
    case "$1" in "$c" | "$c"/*) return 0 ;; esac
  done
  return 1
}
ignored() { # path: whether .dockerignore names it or a parent
  local pattern
  [ -f .dockerignore ] || return 1
  while read -r pattern; do
    case "$pattern" in "" | "#"*) continue ;; esac
    case "$1" in "$pattern" | "$pattern"/*) return 0 ;; esac
  done <.dockerignore
  return 1
}
# What cargo reads besides the compiler's inputs (those are step 2): the manifest, the lock
# file, and the benchmark targets the manifest names.
needed=(Cargo.toml Cargo.lock)
while read -r bench; do needed+=("benches/$bench.rs"); done < <(
  awk '/^\[\[bench\]\]/{b=1; next} b && /^name *=/{gsub(/[" ]/, "", $0); sub(/name=/, "", $0); print; b=0}' Cargo.toml
)
for f in "${needed[@]}"; do
  [ -e "$f" ] || fail "$f is needed by the build but does not exist"
  is_copied "$f" || fail "the build stage does not copy $f (named by Cargo.toml)"
  ignored "$f" && fail ".dockerignore keeps $f out of the build context"
done
for want in 'USER tickflow' 'EXPOSE 9464' 'TICKFLOW_METRICS__ADDR=0.0.0.0:9464' 'VOLUME' 'HEALTHCHECK' 'STOPSIGNAL SIGTERM' \
  'COPY config' 'COPY schemas' 'COPY topologies' 'COPY queries'; do
  printf '%s\n' "$runtime_stage" | grep -qF "$want" || fail "the runtime stage lacks '$want'"
done
cargo_line=$(printf '%s\n' "$build_stage" | grep -oE 'cargo build [^&]*' | head -n 1 | sed 's/[[:space:]\\]*$//')
[ -n "$cargo_line" ] || fail "no cargo build in the build stage"
echo "image check: lint passed (${#needed[@]} build inputs are copied and not ignored)"

# --- 2. everything the compiler read is in the build context -----------------------------------
# The release build records in its dep-info file every file rustc read to make the binary:
# the sources and the schemas, topologies and queries compiled in. Each of them inside the
# repository must be copied by the build stage and not kept out by .dockerignore; then the
# image's `cargo build` reads nothing its context lacks. (This replaced building a second
# time from a copy of the context, which proved the same with a second ~6 min compile.)
bin="$CARGO_TARGET_DIR/release/tickflow"
[ -f "$bin.d" ] && [ "$bin.d" -nt Cargo.lock ] || cargo build --release --locked --bin tickflow
rm -rf "${TICKFLOW_CACHE:-$HOME/.cache/tickflow}/image-context" # left by the earlier check
root="$(pwd)/"
inputs=0
for f in $(cut -d: -f2- "$bin.d" | tr ' ' '\n' | grep -F "$root" | sed "s#^$root##" | sort -u); do
  [ -e "$f" ] || continue # generated or moved since; the build already saw it
  is_copied "$f" || fail "the build stage does not copy $f, which the compiler reads"
  ignored "$f" && fail ".dockerignore keeps $f out of the build context, and the compiler reads it"
  inputs=$((inputs + 1))
done
[ "$inputs" -gt 10 ] || fail "the dep-info file $bin.d names only $inputs files of this repository"
echo "image check: the $inputs files the compiler read for the binary are all in the build context"
mkdir -p "$WORK/img/bin"
cp "$bin" "$WORK/img/bin/tickflow"

# --- 3. run as the image does ------------------------------------------------------------------
APP="$WORK/img/app"
mkdir -p "$APP/state" "$APP/lake"
cp -r config schemas topologies queries "$APP/"
chmod -R a-w "$APP/config" "$APP/schemas" "$APP/topologies" "$APP/queries"
chmod 755 "$WORK" "$WORK/img" "$WORK/img/bin" "$APP"
as_user=()
if [ "$(id -u)" = 0 ]; then
  id tickflow-ci >/dev/null 2>&1 || useradd --system --no-create-home tickflow-ci
  chown tickflow-ci "$APP/state" "$APP/lake"
  chmod a-w "$APP"
  as_user=(runuser -u tickflow-ci --)
else
  echo "image check: not root, so the binary runs as $(id -un), not a separate user"
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
in_image() { # command...: runs in /app with the image's environment
  (cd "$APP" && "${as_user[@]}" env -i PATH=/usr/bin:/bin HOME="$APP/state" \
    TICKFLOW_METRICS__ADDR="0.0.0.0:$METRICS_PORT" TICKFLOW_STATE__DIR="$APP/state" \
    TICKFLOW_DEMO_DIR="$APP/state/demo" "${EXTRA_ENV[@]}" "$WORK/img/bin/tickflow" "$@")
}
METRICS_PORT=$(port)
EXTRA_ENV=()
in_image demo --duration 2s --rate 20000 >"$WORK/demo.log" 2>&1 || { cat "$WORK/demo.log"; fail "the demo failed in the image layout"; }
grep -q "every bar reconciles" "$WORK/demo.log" || { cat "$WORK/demo.log"; fail "the demo did not reconcile"; }
echo "image check: demo ran as an unprivileged user with read-only config"

# The flagship topology against a broker and a registry of its own.
rm -rf "${APP:?}/lake/"* "$APP/state/"*
KAFKA_PORT=$(port)
REGISTRY_PORT=$(port)
"$WORK/img/bin/tickflow" broker --port "$KAFKA_PORT" --data-dir "$WORK/broker" >"$WORK/broker.log" 2>&1 &
PIDS+=($!)
"$WORK/img/bin/tickflow" registry --port "$REGISTRY_PORT" --dir "$WORK/registry" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for p in "$KAFKA_PORT" "$REGISTRY_PORT"; do
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
EXTRA_ENV=(TICKFLOW_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" TICKFLOW_REGISTRY__URL="http://127.0.0.1:$REGISTRY_PORT")
in_image simulate --count 20000 --symbols 5 --partitions 2 --end-watermark >"$WORK/simulate.log" 2>&1 || { cat "$WORK/simulate.log"; fail "simulate failed"; }
in_image run --topology topologies/ohlc_vwap.yaml --stop-when-idle 15s >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; fail "run failed in the image layout"; }
tables=$(find "$APP/lake" -name '*.avro' -o -name '*.parquet' | sed -E 's#.*/lake/([^/]+)/.*#\1#' | sort -u | tr '\n' ' ')
case "$tables" in
  *bars_1m*) ;;
  *) cat "$WORK/run.log"; fail "the run landed no 1-minute bars (tables: $tables)" ;;
esac
echo "image check: run of topologies/ohlc_vwap.yaml landed tables: $tables"
echo "image check: 3 passed, 0 failed"
