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

# What the build needs (the same check as the first command's), installed when run as root.
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
check_build_prereqs
install_or_explain || exit 1
bash tests/first_command.sh

# What only the tests need: DejaVu Sans (the text of `tickflow chart`), stunnel (a TLS
# listener in front of the test broker, for the Kafka TLS tests) and promtool (Prometheus'
# own checker of the alert rules and dashboard queries in deploy/).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need "DejaVu Sans (the chart test)" fonts-dejavu-core
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 \
  || need "stunnel (TLS in front of the test broker)" stunnel4
command -v promtool >/dev/null 2>&1 || need "promtool (checks deploy/: alerts, dashboard)" prometheus
install_or_explain || exit 1
bash tests/deploy.sh

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
# The broker's group coordinator logs its leader choices and expired members, shown when a
# suite fails (a consumer group that never assigns is otherwise invisible from the tests).
"$CARGO_TARGET_DIR/release/tickflow" broker --port "$KAFKA_PORT" --data-dir "$RUN_DIR/broker" \
  --log "warn,tickflow=info,tansu_broker::coordinator::group=info" >"$RUN_DIR/broker.log" 2>&1 &
PIDS+=($!)
MOTO_PORT=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN_DIR/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$KAFKA_PORT" "broker" "$RUN_DIR/broker.log"
wait_port "$MOTO_PORT" "moto" "$RUN_DIR/moto.log"

export TICKFLOW_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
export TICKFLOW_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
echo "broker on $TICKFLOW_TEST_KAFKA, moto on $TICKFLOW_TEST_AWS_ENDPOINT"

if [ $# -gt 0 ]; then
  # Arguments select tests, e.g. `--test integration lake::` (one suite).
  cargo test --release --locked "$@"
  exit 0
fi
cargo test --release --locked --lib --bins
cargo test --release --locked --doc
# The integration tests are one binary (tests/main.rs; one link instead of one per suite).
# The suites that SIGKILL engines under load or wait on wall-clock idleness run a suite at a
# time: two suites' crash tests at once would share two cores. The others run together, two
# tests at a time, as each suite's own tests do. A failing suite does not stop the others:
# one run shows every failure.
SERIAL="broker_restart exactly_once failover soak topology_golden topology_idle topology_restart"
together=()
failed=()
for suite in $(sed -nE 's/^mod ([a-z0-9_]+);$/\1/p' tests/main.rs | grep -vx common); do
  case " $SERIAL " in *" $suite "*) ;; *) together+=("$suite::") ;; esac
done
cargo test --release --locked --test integration -- "${together[@]}" || failed+=("${together[@]}")
for suite in $SERIAL; do
  cargo test --release --locked --test integration -- "$suite::" || failed+=("$suite")
done

# The container image, as far as a machine without a Docker engine can check it.
bash scripts/check-image.sh
if [ ${#failed[@]} -gt 0 ]; then
  echo "the broker's group coordinator, last 100 lines:" >&2
  grep "coordinator::group" "$RUN_DIR/broker.log" | tail -n 100 >&2 || true
  echo "failed suites: ${failed[*]}" >&2
  exit 1
fi
