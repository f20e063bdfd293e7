#!/usr/bin/env python3
"""Draws deploy/grafana-dashboard.json's panels as an HTML page of SVG charts, from the data a
Prometheus server returns for each panel's queries (its range API), laid out on the dashboard's
own grid. Grafana itself cannot be installed here; this stands in for it to take the README's
screenshot, and draws nothing the queries did not return.

usage: dashboard_page.py PROMETHEUS_URL START END OUT.html   (START/END: Unix seconds)
"""
import html
import json
import re
import sys
import time
import urllib.parse
import urllib.request

COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a"]
ROW = 34  # pixels per grid row unit
WIDTH = 1560  # page width: 24 grid columns


def query_range(url, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body["status"] != "success":
        raise SystemExit(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    if not fmt:
        labels = {k: v for k, v in metric.items() if k not in ("__name__", "job")}
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def human(v, unit):
    if unit == "bytes" or unit == "Bps":
        for suffix in ["B", "KiB", "MiB", "GiB"]:
            if abs(v) < 1024 or suffix == "GiB":
                return f"{v:.3g} {suffix}" + ("/s" if unit == "Bps" else "")
            v /= 1024
    if unit == "s":
        return f"{v * 1000:.3g} ms" if abs(v) < 1 and v != 0 else f"{v:.3g} s"
    if unit == "percentunit":
        return f"{v * 100:.3g}%"
    suffix = {"ops": "/s", "reqps": "/s"}.get(unit, "")
    for k, s in [(1e9, "G"), (1e6, "M"), (1e3, "k")]:
        if abs(v) >= k:
            return f"{v / k:.3g}{s}{suffix}"
    return f"{v:.3g}{suffix}"


def chart(series, unit, start, end, w, h):
    left, right, top, bottom = 70, 10, 8, 22
    pw, ph = w - left - right, h - top - bottom
    values = [float(v) for s in series for _, v in s["values"] if v not in ("NaN", "+Inf", "-Inf")]
    lo, hi = (min(values + [0.0]), max(values + [0.0])) if values else (0.0, 1.0)
    if hi == lo:
        hi = lo + 1
    x = lambda t: left + (t - start) / (end - start) * pw
    y = lambda v: top + ph - (v - lo) / (hi - lo) * ph
    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{html.escape(human(v, unit))}</text>')
    for i in range(6):
        t = start + (end - start) * i / 5
        label = time.strftime("%H:%M:%S", time.gmtime(t))
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(f'<text x="{x(t):.1f}" y="{h - 6}" text-anchor="{anchor}">{label}</text>')
    for s in series:
        points, path = [], []
        for t, v in s["values"]:
            if v in ("NaN", "+Inf", "-Inf"):
                if len(points) > 1:
                    path.append(points)
                points = []
                continue
            points.append(f"{x(float(t)):.1f},{y(float(v)):.1f}")
        if points:
            path.append(points)
        for p in path:
            out.append(f'<polyline points="{" ".join(p)}" stroke="{s["colour"]}" />')
    out.append("</svg>")
    return "".join(out)


def main():
    url, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    step = max(1, int((end - start) / 300))
    dash = json.load(open("deploy/grafana-dashboard.json"))
    col = WIDTH / 24
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"]) * ROW
    cells = []
    for panel in dash["panels"]:
        g = panel["gridPos"]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        series = []
        for target in panel["targets"]:
            for s in query_range(url, target["expr"], start, end, step):
                s["name"] = legend(target.get("legendFormat"), s["metric"])
                s["colour"] = COLOURS[len(series) % len(COLOURS)]
                series.append(s)
        w, h = int(g["w"] * col) - 8, int(g["h"] * ROW) - 8
        keys = "".join(
            f'<span><i style="background:{s["colour"]}"></i>{html.escape(s["name"])}</span>'
            for s in series
        )
        body = chart(series, unit, start, end, w - 16, h - 64) if series else '<p class="none">No data</p>'
        cells.append(
            f'<div class="panel" style="left:{g["x"] * col + 4:.0f}px;top:{g["y"] * ROW + 4}px;'
            f'width:{w}px;height:{h}px"><h3>{html.escape(panel["title"])}</h3>{body}'
            f'<div class="keys">{keys}</div></div>'
        )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #111217; color: #ccccdc; font: 12px 'DejaVu Sans', sans-serif; }}
header {{ padding: 10px 14px; font-size: 16px; }} header small {{ color: #8e8e8e; font-size: 12px; }}
main {{ position: relative; width: {WIDTH}px; height: {height}px; }}
.panel {{ position: absolute; background: #181b1f; border: 1px solid #2a2d33; border-radius: 3px; padding: 6px 8px; box-sizing: border-box; overflow: hidden; }}
h3 {{ margin: 0 0 4px; font-size: 13px; font-weight: 500; }}
svg text {{ fill: #8e8e8e; font-size: 10px; }} .grid {{ stroke: #2a2d33; }}
polyline {{ fill: none; stroke-width: 1.6; }}
.keys span {{ margin-right: 12px; white-space: nowrap; }} .keys i {{ display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }}
.none {{ color: #8e8e8e; text-align: center; margin-top: 80px; }}
</style></head><body><header>{html.escape(dash["title"])} <small>deploy/grafana-dashboard.json, each panel's
queries answered by Prometheus over the run, to {stamp}</small></header><main>{"".join(cells)}</main></body></html>"""
    open(out, "w").write(page)
    print(f"{out}: {len(cells)} panels, {sum(c.count('<polyline') for c in cells)} lines")


if __name__ == "__main__":
    main()
