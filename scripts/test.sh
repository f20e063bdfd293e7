#!/usr/bin/env bash
# The test command: installs what the tests need, starts a Kafka-protocol broker (Tansu, served
# by `tickflow broker` with SQLite storage) and moto (S3/Glue) on free 127.0.0.1 ports, runs
# every test with their addresses in the environment, and stops the services on exit, also
# when tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
CACHE="${TICKFLOW_CACHE:-$HOME/.cache/tickflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tickflow-test.XXXXXX")"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port, name, log
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start; its log:" >&2
  cat "$3" >&2
  exit 1
}

# RocksDB's bindings need libclang at build time.
if command -v dpkg >/dev/null && ! dpkg -s libclang-dev >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing libclang-dev (for RocksDB's bindings)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
  else
    echo "libclang is missing: install libclang-dev (RocksDB's bindings need it)" >&2
    exit 1
  fi
fi

# `tickflow chart` draws its text with DejaVu Sans.
if command -v dpkg >/dev/null && ! dpkg -s fonts-dejavu-core >/dev/null 2>&1 \
  && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing fonts-dejavu-core (for the chart test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
  else
    echo "DejaVu Sans is missing: install fonts-dejavu-core (tickflow chart draws its text with it)" >&2
    exit 1
  fi
fi

# moto, pinned, in its own virtualenv.
VENV="$CACHE/venv-moto-$MOTO_VERSION"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing moto $MOTO_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
fi

# Tests run on the optimised build: the crash tests push a million ticks through the engine,
# the broker and the lake sink, which the unoptimised build takes many times longer to do.
echo "building tickflow, release profile (target dir $CARGO_TARGET_DIR)"
cargo build --release --locked --bins --tests

KAFKA_PORT=$(free_port)
"$CARGO_TARGET_DIR/release/tickflow" broker --port "$KAFKA_PORT" --data-dir "$RUN_DIR/broker" \
  >"$RUN_DIR/broker.log" 2>&1 &
PIDS+=($!)
MOTO_PORT=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN_DIR/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$KAFKA_PORT" "broker" "$RUN_DIR/broker.log"
wait_port "$MOTO_PORT" "moto" "$RUN_DIR/moto.log"

export TICKFLOW_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
export TICKFLOW_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
echo "broker on $TICKFLOW_TEST_KAFKA, moto on $TICKFLOW_TEST_AWS_ENDPOINT"

cargo test --release --locked "$@"
