#!/usr/bin/env bash
# Checks deploy/: the Prometheus scrape config and alert rules with promtool (syntax, and the
# rules' unit tests evaluated by Prometheus' rule engine), every PromQL expression of the
# Grafana dashboard, and that every metric they name is one the README documents (and
# tests/query.rs proves exposed).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

promtool check config deploy/prometheus.yml
promtool check rules deploy/alerts.yml
(cd deploy && promtool test rules alerts_test.yml)

# The dashboard's expressions, as recording rules, so that promtool parses each one.
python3 - "$work/dashboard_rules.yml" <<'PY'
import json, sys
dash = json.load(open("deploy/grafana-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
assert exprs, "the dashboard has no queries"
with open(sys.argv[1], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        out.write(f"      - record: dashboard:expr{i}\n        expr: {json.dumps(e)}\n")
print(f"dashboard: {len(dash['panels'])} panels, {len(exprs)} queries")
PY
promtool check rules "$work/dashboard_rules.yml"

# Every metric the rules and the dashboard name is documented (so exposed and tested).
python3 - <<'PY'
import re
readme = open("README.md").read()
listed = readme.split("<!-- metrics -->")[1].split("<!-- /metrics -->")[0]
documented = {m.split("{")[0] for m in re.findall(r"`([a-z_]+(?:\{[^`]*\})?)`", listed)}
used = set()
for f in ["deploy/alerts.yml", "deploy/grafana-dashboard.json"]:
    used |= set(re.findall(r"\b((?:tickflow|process)_[a-z_]+)", open(f).read()))
unknown = sorted(
    m for m in used
    if m not in documented and re.sub(r"_(bucket|count|sum)$", "", m) not in documented
)
assert not unknown, f"deploy/ names metrics the README does not document: {unknown}"
print(f"deploy/ names {len(used)} metrics, all documented")
PY
echo "deploy check passed"
