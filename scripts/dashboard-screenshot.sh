#!/usr/bin/env bash
# Renders docs/dashboard.png, the README's dashboard screenshot, from a real run: the test
# broker, the built-in registry, a paced simulator, `tickflow run` of the flagship topology
# (engine and lake sink) SIGKILLed once and restarted (a restore and a catch-up show), and a
# Prometheus server scraping it with deploy/prometheus.yml and deploy/alerts.yml. Grafana
# cannot be installed here, so scripts/dashboard_page.py draws the dashboard's panels from
# Prometheus' answers to their queries, and headless Chromium (Debian's
# chromium-headless-shell) takes the picture. Needs the release build; about 4 minutes.
#   usage: scripts/dashboard-screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/dashboard.png}"
T="${CARGO_TARGET_DIR:-$HOME/.cache/tickflow/target}/release/tickflow"
[ -x "$T" ] || { echo "build first: cargo build --release --locked" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "needs Debian's prometheus package" >&2; exit 1; }
SHOT=$(command -v chromium-headless-shell || command -v chromium || true)
[ -n "$SHOT" ] || { echo "needs Debian's chromium-headless-shell package" >&2; exit 1; }

W="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KP=$(port) RP=$(port) MP=$(port) PP=$(port)
"$T" broker --port "$KP" --data-dir "$W/broker" >"$W/broker.log" 2>&1 & PIDS+=($!)
"$T" registry --port "$RP" --dir "$W/registry" >"$W/registry.log" 2>&1 & PIDS+=($!)
sed -e "s|127.0.0.1:9464|127.0.0.1:$MP|" -e "s|interval: 15s|interval: 2s|" deploy/prometheus.yml >"$W/prometheus.yml"
cp deploy/alerts.yml "$W/"
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$W/prometheus.log" 2>&1 & PIDS+=($!)
sed -e "s|file://./lake|file://$W/lake|" -e "s|max_records: 1000000|max_records: 20000|" \
  -e "s|flush_interval: 60s|flush_interval: 5s|" topologies/ohlc_vwap.yaml >"$W/t.yaml"
sleep 3

export TICKFLOW_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:$KP" TICKFLOW_REGISTRY__URL="http://127.0.0.1:$RP"
export TICKFLOW_STATE__DIR="$W/state" TICKFLOW_METRICS__ADDR="127.0.0.1:$MP" TICKFLOW_LOG=warn
# A live feed: market time runs with the wall clock, the exchange's UTC offset chosen so
# that it is midday there now.
OFFSET=$(python3 -c 'import time; h = (12 - time.gmtime().tm_hour + 12) % 24 - 12; print(f"{h:+03d}:00")')
export TICKFLOW_SIMULATOR__UTC_OFFSET="$OFFSET"
START=$(date +%s)
"$T" simulate --topic ticks.raw --partitions 4 --symbols 50 --rate 1500 --duration 170s \
  --trades-per-second 1500 --late 0.01 --start-time "$(date -u +%FT%TZ)" >"$W/sim.log" 2>&1 & SIM=$!
run() { "$T" run --topology "$W/t.yaml" --instance-id screenshot >>"$W/run.log" 2>&1 & RUN=$!; }
run
sleep 80
kill -KILL "$RUN"; wait "$RUN" 2>/dev/null || true
sleep 10
run
wait "$SIM"
sleep 30
END=$(date +%s)
python3 scripts/dashboard_page.py "http://127.0.0.1:$PP" "$START" "$END" "$W/dashboard.html"
kill -TERM "$RUN"; wait "$RUN" 2>/dev/null || true
"$SHOT" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1560,1700 \
  --screenshot="$W/dashboard.png" "file://$W/dashboard.html" >"$W/chromium.log" 2>&1
cp "$W/dashboard.png" "$OUT"
echo "wrote $OUT"
