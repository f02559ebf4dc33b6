"""The dashboard page: one self-contained HTML document (inline CSS and script, SVG charts, no network but its
own `/dashboard/data`), refreshed every few seconds.

Charts: requests and errors over time, latency percentiles (p50/p90/p99), tool use, confidence against
verified accuracy (calibration), feedback, the canary's accuracy against its reference (a red banner while it
is falling), and the model versions with the version store's history. After each refresh the page sets
`data-updated` on `<body>` (the browser test waits for it).

Exercise: `pytest tests/serve/test_dashboard.py`.
"""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__ - agent-forge dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header span{opacity:.8}
#alert{display:none;background:#b91c1c;color:#fff;padding:8px 18px;font-weight:600}
#alert.on{display:block}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;padding:14px}
section{background:#fff;border:1px solid #e3e5e8;border-radius:6px;padding:10px 12px}
section h2{font-size:14px;margin:0 0 6px}
svg{width:100%;height:200px;display:block}
.legend{font-size:12px;color:#555}.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
table{border-collapse:collapse;width:100%;font-size:12px}td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}
.empty{fill:#888;font-size:12px}
</style></head>
<body data-updated="0">
<header><h1>__TITLE__</h1><span id="summary">loading...</span></header>
<div id="alert" role="alert"></div>
<main>
<section><h2>Requests</h2><svg data-chart="requests"></svg>
<div class="legend"><i style="background:#2563eb"></i>answered<i style="background:#dc2626"></i>errors</div></section>
<section><h2>Latency percentiles (ms)</h2><svg data-chart="latency"></svg>
<div class="legend"><i style="background:#16a34a"></i>p50<i style="background:#d97706"></i>p90<i style="background:#dc2626"></i>p99</div></section>
<section><h2>Tool use</h2><svg data-chart="tools"></svg></section>
<section><h2>Confidence against verified accuracy</h2><svg data-chart="calibration"></svg>
<div class="legend"><i style="background:#7c3aed"></i>verified accuracy per confidence bin<i style="background:#aaa"></i>perfect calibration</div></section>
<section><h2>Feedback</h2><svg data-chart="feedback"></svg>
<div class="legend"><i style="background:#16a34a"></i>thumbs up<i style="background:#dc2626"></i>thumbs down<i style="background:#2563eb"></i>corrections</div></section>
<section><h2>Canary (drift watch)</h2><svg data-chart="canary"></svg>
<div class="legend"><i style="background:#2563eb"></i>accuracy %<i style="background:#aaa"></i>reference<i style="background:#dc2626"></i>falling</div></section>
<section style="grid-column:1/-1"><h2>Model versions</h2><div id="versions"></div></section>
</main>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const W = 420, H = 200, L = 40, R = 10, T = 10, B = 24;
const REFRESH_MS = __REFRESH_MS__;
let updates = 0;

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}
function canvas(name) {
  const svg = document.querySelector('svg[data-chart="' + name + '"]');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  return svg;
}
function empty(svg, text) {
  const t = el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, svg);
  t.textContent = text;
}
function axes(svg, ymax, label) {
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}, svg);
  for (const f of [0, 0.5, 1]) {
    const y = H - B - f * (H - B - T);
    const t = el("text", {x: L - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#555"}, svg);
    t.textContent = fmt(f * ymax) + (label || "");
  }
}
function fmt(v) { return v >= 100 ? Math.round(v).toString() : (Math.round(v * 10) / 10).toString(); }
function xs(n) { const w = (W - L - R) / Math.max(n, 1); return i => L + i * w; }
function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}); }
function timeLabels(svg, points) {
  if (!points.length) return;
  const x = xs(points.length);
  for (const i of [0, Math.floor(points.length / 2), points.length - 1]) {
    const t = el("text", {x: x(i), y: H - 8, "font-size": 10, fill: "#555"}, svg);
    t.textContent = clock(points[i].t);
  }
}
function bars(name, points, series) {
  const svg = canvas(name);
  const total = p => series.reduce((s, [k]) => s + (p[k] || 0), 0);
  const ymax = Math.max(1, ...points.map(total));
  if (!points.some(p => total(p) > 0)) { empty(svg, "nothing in this window yet"); return; }
  axes(svg, ymax);
  const x = xs(points.length), w = Math.max(1, (W - L - R) / points.length - 2);
  points.forEach((p, i) => {
    let base = H - B;
    for (const [k, color] of series) {
      const h = (p[k] || 0) / ymax * (H - B - T);
      if (h > 0) el("rect", {x: x(i) + 1, y: base - h, width: w, height: h, fill: color}, svg);
      base -= h;
    }
  });
  timeLabels(svg, points);
}
function lines(svg, n, series, ymax) {
  const x = xs(n), step = (W - L - R) / Math.max(n, 1) / 2;
  for (const [values, color, dash] of series) {
    let d = "";
    values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const y = H - B - v / ymax * (H - B - T);
      d += (d ? " L" : "M") + (x(i) + step).toFixed(1) + " " + y.toFixed(1);
      el("circle", {cx: x(i) + step, cy: y, r: 2.5, fill: color}, svg);
    });
    if (d) el("path", {d: d, fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash || ""}, svg);
  }
}
function latency(points) {
  const svg = canvas("latency");
  const all = points.flatMap(p => [p.p50, p.p90, p.p99]).filter(v => v !== null);
  if (!all.length) { empty(svg, "no answered requests in this window yet"); return; }
  const ymax = Math.max(...all) * 1.1;
  axes(svg, ymax);
  lines(svg, points.length, [[points.map(p => p.p50), "#16a34a"], [points.map(p => p.p90), "#d97706"],
                             [points.map(p => p.p99), "#dc2626"]], ymax);
  timeLabels(svg, points);
}
function tools(items) {
  const svg = canvas("tools");
  if (!items.length) { empty(svg, "no tool calls in this window"); return; }
  const shown = items.slice(0, 8), max = Math.max(...shown.map(t => t.calls)), row = (H - T - 4) / shown.length;
  shown.forEach((t, i) => {
    const w = t.calls / max * (W - 150);
    el("rect", {x: 110, y: T + i * row, width: Math.max(w, 1), height: row * 0.7, fill: "#0891b2"}, svg);
    const label = el("text", {x: 104, y: T + i * row + row * 0.5, "text-anchor": "end", "font-size": 11}, svg);
    label.textContent = t.name;
    const count = el("text", {x: 114 + w, y: T + i * row + row * 0.5, "font-size": 11}, svg);
    count.textContent = t.calls;
  });
}
function calibration(bins) {
  const svg = canvas("calibration");
  if (!bins.some(b => b.n > 0)) { empty(svg, "no verified answers with a confidence yet"); return; }
  axes(svg, 1);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: T, stroke: "#aaa", "stroke-dasharray": "4 3"}, svg);
  const x = xs(bins.length), w = (W - L - R) / bins.length - 2;
  bins.forEach((b, i) => {
    if (b.accuracy !== null) {
      const h = b.accuracy * (H - B - T);
      el("rect", {x: x(i) + 1, y: H - B - h, width: w, height: Math.max(h, 1), fill: "#7c3aed", opacity: 0.8}, svg);
    }
    const t = el("text", {x: x(i) + w / 2, y: H - 8, "text-anchor": "middle", "font-size": 9, fill: "#555"}, svg);
    t.textContent = b.lo.toFixed(1) + (b.n ? " (" + b.n + ")" : "");
  });
}
function canary(info) {
  const svg = canvas("canary"), runs = info.runs;
  if (!runs.length) { empty(svg, "no canary run yet"); return; }
  axes(svg, 100, "%");
  lines(svg, runs.length, [[runs.map(r => r.accuracy), "#2563eb"], [runs.map(r => r.reference), "#aaa", "4 3"]], 100);
  const x = xs(runs.length), step = (W - L - R) / Math.max(runs.length, 1) / 2;
  runs.forEach((r, i) => {
    if (r.falling) el("circle", {cx: x(i) + step, cy: H - B - r.accuracy / 100 * (H - B - T), r: 5, fill: "#dc2626",
                                 "data-falling": "1"}, svg);
  });
  timeLabels(svg, runs.map(r => ({t: r.created})));
}
function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); }
function versions(data) {
  const box = document.getElementById("versions");
  box.textContent = "";
  const table = document.createElement("table"), head = document.createElement("tr");
  for (const h of ["version", "first seen", "last seen", "requests", "verified accuracy", "latest canary"]) {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
  }
  table.appendChild(head);
  const canaryOf = {};
  for (const r of data.canary.runs) canaryOf[r.model_version] = r;
  for (const v of data.versions) {
    const row = document.createElement("tr"), c = canaryOf[v.model_version];
    cell(row, v.model_version);
    cell(row, new Date(v.first_seen * 1000).toLocaleString());
    cell(row, new Date(v.last_seen * 1000).toLocaleString());
    cell(row, v.requests);
    cell(row, v.verified_n ? fmt(100 * v.verified_mean) + "% of " + v.verified_n : "-");
    cell(row, c ? fmt(c.accuracy) + "%" + (c.falling ? " (falling)" : "") : "-");
    table.appendChild(row);
  }
  box.appendChild(table);
  if (data.history.length) {
    const list = document.createElement("ul");
    for (const h of data.history) {
      const li = document.createElement("li");
      li.textContent = new Date(h.time * 1000).toLocaleString() + ": " + h.event + " " + h.version + (h.note ? " - " + h.note : "");
      list.appendChild(li);
    }
    box.appendChild(list);
  }
}
function render(data) {
  const summary = document.getElementById("summary"), alert = document.getElementById("alert");
  if (!data.enabled) {
    summary.textContent = "this server keeps no interaction log (start it with --log-db or --log-url)";
    return;
  }
  const t = data.totals;
  summary.textContent = "model version " + data.model_version + " | last " + Math.round(data.window_s / 60) +
    " min: " + t.requests + " requests, " + t.errors + " errors" +
    (t.verified ? ", verified accuracy " + fmt(100 * t.verified_accuracy) + "% of " + t.verified : "");
  const last = data.canary.runs[data.canary.runs.length - 1];
  alert.className = data.canary.falling ? "on" : "";
  alert.textContent = data.canary.falling ? "Canary falling: " + fmt(last.accuracy) + "% against " +
    fmt(last.reference) + "% (version " + last.model_version + ")" : "";
  bars("requests", data.requests, [["ok", "#2563eb"], ["errors", "#dc2626"]]);
  latency(data.latency);
  tools(data.tools);
  calibration(data.calibration);
  bars("feedback", data.feedback, [["up", "#16a34a"], ["down", "#dc2626"], ["corrections", "#2563eb"]]);
  canary(data.canary);
  versions(data);
}
async function refresh() {
  try {
    const response = await fetch("/dashboard/data" + location.search, {cache: "no-store"});
    if (response.ok) render(await response.json());
    else document.getElementById("summary").textContent = "cannot read the data (HTTP " + response.status + ")";
  } catch (error) {
    document.getElementById("summary").textContent = "the server is not reachable";
  }
  document.body.dataset.updated = String(++updates);
  setTimeout(refresh, REFRESH_MS);
}
refresh();
</script></body></html>
"""


def page(title: str, refresh_ms: int = 5000) -> str:
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__REFRESH_MS__", str(int(refresh_ms)))
