//! `/admin`: a live page for people, with no external assets. The page
//! polls `/admin/state` (JSON) once a second and draws the numbers, a chart
//! of the last minutes and the list of live operations.

use crate::gateway::Gateway;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The state behind the page: current numbers, history, live operations
/// (each connection's rows are its state machine's live operations, as
/// ws.rs publishes them).
pub fn state(gateway: &Gateway) -> Value {
    let metrics = &gateway.metrics;
    let sampled = gateway.sampled();
    let now = gateway.now();
    let views = gateway.views.lock().unwrap_or_else(|e| e.into_inner());
    let mut operations = Vec::new();
    for (connection, view) in views.iter() {
        let rows = view.operations.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows.iter() {
            operations.push(json!({
                "connection": connection,
                "peer": view.peer.to_string(),
                "protocol": view.protocol,
                "id": row.id,
                "field": row.field,
                "age_ms": now.0.saturating_sub(row.started.0),
            }));
        }
    }
    let connection_count = views.len();
    drop(views);
    let mysql: Vec<Value> = gateway
        .live()
        .upstreams
        .mysql_stats()
        .into_iter()
        .map(|(db, stats)| {
            json!({
                "db": db,
                "idle": stats.idle,
                "busy": stats.busy,
                "max": stats.max,
                "live_polls": stats.live_polls,
                "acquire_waits_total": stats.acquire_waits_total,
                "acquire_timeouts_total": stats.acquire_timeouts_total,
                "kills_total": stats.kills_total,
                "queries_total": stats.queries_total,
            })
        })
        .collect();
    let capacity = gateway.capacity();
    let reload = gateway
        .reload_status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json!({
        "draining": gateway.is_draining(),
        "ready": capacity.ready,
        "max_connections": capacity.max_connections,
        "reload": {
            "generation": capacity.config_generation,
            "ok_total": reload.ok_total,
            "failed_total": reload.failed_total,
            "last_ok": reload.last.as_ref().map(Result::is_ok),
            "last": reload.last.as_ref().map(|r| match r { Ok(s) | Err(s) => s.clone() }),
        },
        "now": {
            "connections": sampled.connections,
            "operations": metrics.operations.load(Ordering::Relaxed),
            "upstream_streams": sampled.upstream_streams,
            "upstream_connections": sampled.upstream_connections,
            "shared_streams": sampled.shared_streams,
            "shared_subscribers": sampled.shared_subscribers,
            "tasks": sampled.tasks,
            "open_fds": sampled.open_fds,
            "resident_memory_bytes": sampled.resident_memory_bytes,
            "operations_started_total": metrics.operations_started_total.load(Ordering::Relaxed),
            "operations_cancelled_total": metrics.operations_cancelled_total.load(Ordering::Relaxed),
            "panics_total": metrics.panics_total.load(Ordering::Relaxed),
        },
        "websockets_listed": connection_count,
        "history": gateway.history.snapshot(),
        "operations": operations,
        "shared": gateway.live().upstreams.shared().rows(),
        "mysql": mysql,
    })
}

/// The page itself: one HTML document with inline CSS, JS and SVG.
pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Terminus admin</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  .state { font-weight: 600; padding: .1rem .5rem; border-radius: .3rem; background: #d8f3dc; }
  .state.draining { background: #ffd6a5; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: .6rem; margin-bottom: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: .4rem; padding: .5rem .7rem; }
  .card .v { font-size: 1.4rem; font-variant-numeric: tabular-nums; }
  .card .k { color: #5b6475; font-size: .8rem; }
  svg { background: #fff; border: 1px solid #dde1e8; border-radius: .4rem; width: 100%; height: 180px; }
  .legend span { margin-right: 1rem; }
  table { border-collapse: collapse; width: 100%; background: #fff; margin-top: .5rem; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eef0f4; font-variant-numeric: tabular-nums; }
  th { background: #eef0f4; }
  .err { color: #b00020; }
</style>
</head>
<body>
<h1>Terminus <span id="state" class="state">…</span> <span id="err" class="err"></span></h1>
<p id="reload"></p>
<p><a href="/simulator/">Browser simulator</a>: thousands of simulated clients in this browser, or live WebSockets against this gateway.</p>
<div class="cards" id="cards"></div>
<div class="legend"><span style="color:#2f6fde">■ connections</span><span style="color:#d9480f">■ operations</span><span style="color:#2b8a3e">■ upstream streams</span><span style="color:#7048e8">■ tasks</span> <span id="range"></span></div>
<svg id="chart" viewBox="0 0 600 180" preserveAspectRatio="none"></svg>
<h2 style="font-size:1.1rem">Shared streams <span id="sharedcount"></span></h2>
<table><thead><tr><th>upstream method</th><th>key (request, metadata, timeouts)</th><th>subscribers</th><th>messages</th><th>skipped</th><th>age</th></tr></thead><tbody id="shared"></tbody></table>
<h2 style="font-size:1.1rem">Live operations <span id="opcount"></span></h2>
<table><thead><tr><th>connection</th><th>peer</th><th>protocol</th><th>id</th><th>field</th><th>age</th></tr></thead><tbody id="ops"></tbody></table>
<script>
"use strict";
const cards = [
  ["connections", "connections"], ["operations", "live operations"],
  ["upstream_streams", "upstream streams"], ["upstream_connections", "upstream connections"],
  ["shared_streams", "shared streams"], ["shared_subscribers", "shared subscribers"],
  ["tasks", "tasks"], ["open_fds", "open fds"], ["resident_memory_bytes", "memory (MiB)"],
  ["operations_started_total", "operations started"], ["operations_cancelled_total", "operations cancelled"],
  ["panics_total", "panics"],
];
const series = [["connections", "#2f6fde"], ["operations", "#d9480f"], ["upstream_streams", "#2b8a3e"], ["tasks", "#7048e8"]];
function text(tag, value) { const e = document.createElement(tag); e.textContent = value; return e; }
function age(ms) { return ms < 1000 ? ms + " ms" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : Math.floor(ms / 60000) + " min " + Math.floor(ms % 60000 / 1000) + " s"; }
function draw(history) {
  const svg = document.getElementById("chart");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (history.length < 2) return;
  let max = 1;
  for (const p of history) for (const [k] of series) max = Math.max(max, p[k]);
  const t0 = history[0].at, t1 = history[history.length - 1].at, span = Math.max(1, t1 - t0);
  document.getElementById("range").textContent = "last " + age(span * 1000) + ", max " + max;
  for (const [k, color] of series) {
    const points = history.map(p => ((p.at - t0) / span * 600).toFixed(1) + "," + (175 - p[k] / max * 165).toFixed(1)).join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points); line.setAttribute("fill", "none");
    line.setAttribute("stroke", color); line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
  }
}
async function tick() {
  try {
    const r = await fetch("/admin/state" + location.search, { cache: "no-store" });
    const s = await r.json();
    document.getElementById("err").textContent = "";
    const state = document.getElementById("state");
    state.textContent = s.draining ? "draining" : "serving";
    state.className = s.draining ? "state draining" : "state";
    const box = document.getElementById("cards");
    const card = (v, label) => {
      const c = document.createElement("div"); c.className = "card";
      const ve = text("div", v); ve.className = "v"; const ke = text("div", label); ke.className = "k";
      c.append(ve, ke); return c;
    };
    box.replaceChildren(...cards.map(([k, label]) =>
      card(k === "resident_memory_bytes" ? (s.now[k] / 1048576).toFixed(1) : s.now[k], label)));
    for (const m of s.mysql || []) {
      box.append(card(m.busy + " / " + m.idle + " / " + m.max, "mysql " + m.db + ": busy / idle / max"),
        card(m.live_polls, "mysql " + m.db + ": live polls"),
        card(m.queries_total + " (" + m.kills_total + " killed)", "mysql " + m.db + ": statements"),
        card(m.acquire_timeouts_total, "mysql " + m.db + ": busy answers"));
    }
    const rl = s.reload || {};
    const re = document.getElementById("reload");
    re.textContent = rl.last == null ? "schema generation " + rl.generation :
      "schema generation " + rl.generation + "; last reload " + (rl.last_ok ? "ok: " : "FAILED, nothing changed: ") + rl.last;
    re.className = rl.last_ok === false ? "err" : "";
    draw(s.history);
    const shared = s.shared || [];
    document.getElementById("sharedcount").textContent = "(" + shared.length + ")";
    document.getElementById("shared").replaceChildren(...shared.slice(0, 500).map(x => {
      const tr = document.createElement("tr");
      tr.append(text("td", x.field), text("td", x.key), text("td", x.subscribers), text("td", x.items), text("td", x.skipped), text("td", age(Math.round(x.age_seconds * 1000))));
      return tr;
    }));
    document.getElementById("opcount").textContent = "(" + s.operations.length + ")";
    const rows = s.operations.slice(0, 500).map(o => {
      const tr = document.createElement("tr");
      tr.append(text("td", o.connection), text("td", o.peer), text("td", o.protocol), text("td", o.id), text("td", o.field), text("td", age(o.age_ms)));
      return tr;
    });
    document.getElementById("ops").replaceChildren(...rows);
  } catch (e) {
    document.getElementById("err").textContent = "cannot reach the gateway: " + e;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
"##;
