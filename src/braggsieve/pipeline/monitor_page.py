"""The monitor's web page: one self-contained HTML document (no external scripts, fonts or styles, so it
works on a beamline network without internet).  It polls ``/state`` (pipeline.monitor) twice a second and
draws with plain canvas 2-D calls.  ``?threshold=N`` in the URL sets the slider's starting value (default:
the monitor's --min-peaks)."""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>braggsieve monitor</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg:#f3f5f8; --panel:#fff; --ink:#1c2430; --muted:#5d6b7d; --line:#d8dee7;
          --blue:#1f77b4; --red:#d62728; --green:#2ca02c; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background:var(--bg); color:var(--ink); }
  header { display:flex; align-items:center; gap:16px; padding:10px 20px; background:#1c2430; color:#fff; }
  header h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.2px; }
  header .src { color:#aab6c6; font-family:ui-monospace, monospace; font-size:12px; }
  #status { margin-left:auto; padding:3px 10px; border-radius:12px; font-size:12px; font-weight:600;
            background:#7a8699; }
  #status.live { background:var(--green); } #status.ended { background:#8c6d1f; } #status.down { background:var(--red); }
  main { padding:14px 20px; display:grid; gap:14px; grid-template-columns: repeat(12, 1fr); }
  .tiles { grid-column: span 12; display:grid; gap:14px; grid-template-columns: repeat(6, 1fr); }
  .tile, .panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; }
  .tile { padding:10px 14px; }
  .tile .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
  .tile .value { font-size:28px; font-weight:650; font-variant-numeric: tabular-nums; }
  .tile .sub { color:var(--muted); font-size:12px; }
  .panel { padding:12px 14px; }
  .panel h2 { font-size:13px; margin:0 0 8px; color:var(--muted); text-transform:uppercase; letter-spacing:.5px; }
  .wide { grid-column: span 8; } .narrow { grid-column: span 4; } .half { grid-column: span 6; }
  canvas { width:100%; display:block; }
  .veto { display:flex; align-items:center; gap:12px; margin-bottom:8px; flex-wrap:wrap; }
  .veto input[type=range] { flex:1; min-width:180px; accent-color: var(--red); }
  .veto input[type=number] { width:70px; font-size:14px; padding:2px 4px; }
  #kept { font-size:26px; font-weight:650; color:var(--red); font-variant-numeric: tabular-nums; }
  .kv { color:var(--muted); font-size:12px; font-family:ui-monospace, monospace; }
  .legend span { margin-right:12px; font-size:12px; color:var(--muted); }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; vertical-align:-1px; }
  @media (max-width: 1100px) { .wide,.narrow,.half { grid-column: span 12; } .tiles { grid-template-columns: repeat(3, 1fr); } }
</style>
</head>
<body>
<header>
  <h1>braggsieve monitor</h1><span class="src" id="series"></span>
  <span id="status">waiting for frames</span>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="label">Frames</div><div class="value" id="frames">0</div>
      <div class="sub" id="last-frame">&nbsp;</div></div>
    <div class="tile"><div class="label">Hits</div><div class="value" id="hits">0</div>
      <div class="sub" id="hit-def">&nbsp;</div></div>
    <div class="tile"><div class="label">Hit rate (run)</div><div class="value" id="hit-rate">&ndash;</div>
      <div class="sub">all frames so far</div></div>
    <div class="tile"><div class="label">Hit rate (recent)</div><div class="value" id="recent-rate">&ndash;</div>
      <div class="sub">last 1000 frames</div></div>
    <div class="tile"><div class="label">Frame rate</div><div class="value" id="frame-rate">&ndash;</div>
      <div class="sub" id="latency">frames per second</div></div>
    <div class="tile"><div class="label">Skipped messages</div><div class="value" id="malformed">0</div>
      <div class="sub">malformed, not counted</div></div>
  </section>
  <section class="panel wide">
    <h2>Peaks per frame <span class="kv" id="strip-range"></span></h2>
    <div class="legend"><span><i style="background:var(--blue)"></i>frame</span><span><i style="background:var(--red)"></i>hit</span>
      <span><i style="background:#000"></i>veto threshold</span></div>
    <canvas id="strip" height="230"></canvas>
  </section>
  <section class="panel narrow">
    <h2>Last hit <span class="kv" id="hit-id"></span></h2>
    <canvas id="hit" height="270"></canvas>
    <div class="kv" id="hit-info">no hit yet</div>
  </section>
  <section class="panel half">
    <h2>Veto threshold</h2>
    <div class="veto">
      <label for="threshold">min peaks</label>
      <input type="range" id="threshold" min="0" max="100" step="1" value="10">
      <input type="number" id="threshold-number" min="0" step="1" value="10">
      <span>kept <span id="kept">&ndash;</span></span>
    </div>
    <div class="kv" id="kept-detail">&nbsp;</div>
    <canvas id="curve" height="220"></canvas>
  </section>
  <section class="panel half">
    <h2>Peak-count histogram <span class="kv">(red: frames kept at the threshold)</span></h2>
    <canvas id="histogram" height="250"></canvas>
  </section>
</main>
<script>
"use strict";
let state = null, threshold = null, lastVersion = -1, failures = 0;
const params = new URLSearchParams(location.search);
if (params.has("threshold")) threshold = Math.max(0, parseInt(params.get("threshold"), 10) || 0);
const $ = (id) => document.getElementById(id);
const pct = (x) => (100 * x).toFixed(1) + "%";

function canvas2d(id) {
  const c = $(id), ratio = window.devicePixelRatio || 1, w = c.clientWidth || 600, h = c.height / (c._r || 1);
  c._r = ratio; c.width = w * ratio; c.height = h * ratio; c.style.height = h + "px";
  const g = c.getContext("2d"); g.scale(ratio, ratio); g.font = "11px system-ui, sans-serif";
  return [g, w, h];
}
function axes(g, w, h, xmax, ymax, xlabel, ylabel, ymaxLabel) {
  const L = 46, B = 30, T = 8, R = 12;
  g.strokeStyle = "#9aa6b5"; g.fillStyle = "#5d6b7d"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, h - B); g.lineTo(w - R, h - B); g.stroke();
  g.textAlign = "right"; g.fillText(ymaxLabel !== undefined ? ymaxLabel : String(ymax), L - 4, T + 8); g.fillText("0", L - 4, h - B);
  g.strokeStyle = "#e6eaf0"; g.beginPath(); g.moveTo(L + 1, (T + h - B) / 2); g.lineTo(w - R, (T + h - B) / 2); g.stroke();
  g.fillText(ymaxLabel !== undefined ? "0.5" : String(Math.round(ymax / 2 * 10) / 10), L - 4, (T + h - B) / 2 + 4);
  g.textAlign = "center"; g.fillText(xlabel, (L + w - R) / 2, h - 6);
  g.save(); g.translate(12, (T + h - B) / 2); g.rotate(-Math.PI / 2); g.fillText(ylabel, 0, 0); g.restore();
  return { x: (v) => L + (w - R - L) * v / Math.max(xmax, 1e-9), y: (v) => h - B - (h - B - T) * v / Math.max(ymax, 1e-9),
           L: L, R: w - R, T: T, B: h - B };
}
function keptAt(hist, t) {
  let total = 0, kept = 0;
  for (let k = 0; k < hist.length; k++) { total += hist[k]; if (k >= t) kept += hist[k]; }
  return [kept, total];
}
function drawStrip() {
  const [g, w, h] = canvas2d("strip"), n = state.recent_npeaks;
  const ymax = Math.max(threshold + 1, ...n.slice(-5000), 1);
  const a = axes(g, w, h, Math.max(n.length, 1), ymax, "frames received (most recent on the right)", "peaks");
  g.textAlign = "left"; g.fillText(String(state.frames - n.length), a.L, a.B + 12);
  g.textAlign = "right"; g.fillText(String(state.frames), a.R, a.B + 12);
  const r = n.length > 800 ? 1.2 : 2.2;
  for (let i = 0; i < n.length; i++) {
    g.fillStyle = state.recent_hit[i] ? "#d62728" : "#1f77b4";
    g.fillRect(a.x(i + 0.5) - r, a.y(n[i]) - r, 2 * r, 2 * r);
  }
  g.strokeStyle = "#000"; g.setLineDash([4, 3]); g.beginPath(); g.moveTo(a.L, a.y(threshold)); g.lineTo(a.R, a.y(threshold)); g.stroke(); g.setLineDash([]);
  $("strip-range").textContent = n.length ? `(last ${n.length} frames)` : "";
}
function drawCurve() {
  const [g, w, h] = canvas2d("curve"), hist = state.histogram, top = Math.max(hist.length, threshold + 2);
  const a = axes(g, w, h, top, 1, "veto threshold (min peaks per frame)", "fraction kept", "1");
  g.strokeStyle = "#1f77b4"; g.lineWidth = 2; g.beginPath();
  for (let t = 0; t <= top; t++) {
    const [kept, total] = keptAt(hist, t), f = total ? kept / total : 0;
    if (t === 0) g.moveTo(a.x(t), a.y(f)); else g.lineTo(a.x(t), a.y(f));
    g.lineTo(a.x(t + 1), a.y(f));
  }
  g.stroke(); g.lineWidth = 1;
  g.strokeStyle = "#d62728"; g.beginPath(); g.moveTo(a.x(threshold), a.T); g.lineTo(a.x(threshold), a.B); g.stroke();
  g.fillStyle = "#5d6b7d"; g.textAlign = "right"; g.fillText(String(top), a.R, a.B + 12);
}
function drawHistogram() {
  const [g, w, h] = canvas2d("histogram"), hist = state.histogram, ymax = Math.max(...hist, 1);
  const a = axes(g, w, h, hist.length, ymax, "peaks per frame", "frames");
  for (let k = 0; k < hist.length; k++) {
    g.fillStyle = k >= threshold ? "#d62728" : "#1f77b4";
    g.fillRect(a.x(k) + 0.5, a.y(hist[k]), Math.max(a.x(k + 1) - a.x(k) - 1, 1), a.B - a.y(hist[k]));
  }
  g.fillStyle = "#5d6b7d"; g.textAlign = "right"; g.fillText(String(hist.length - 1), a.R, a.B + 12);
}
function drawHit() {
  const [g, w, h] = canvas2d("hit"), hit = state.last_hit;
  if (!hit) { return; }
  const rows = hit.peaks_row || [], cols = hit.peaks_col || [];
  if (!rows.length && !hit.shape) {
    g.fillStyle = "#5d6b7d"; g.textAlign = "center"; g.fillText("the publisher sends no peak positions", w / 2, h / 2);
    return;
  }
  let ny = hit.shape ? hit.shape[0] : Math.max(...rows, 1) + 1, nx = hit.shape ? hit.shape[1] : Math.max(...cols, 1) + 1;
  const s = Math.min((w - 20) / nx, (h - 34) / ny), ox = (w - nx * s) / 2, oy = 18 + (h - 18 - ny * s) / 2;
  g.fillStyle = "#1c2430"; g.fillRect(ox, oy, nx * s, ny * s);
  g.strokeStyle = "#ff5a4e"; g.lineWidth = 1.2;
  for (let i = 0; i < rows.length; i++) { g.beginPath(); g.arc(ox + (cols[i] + 0.5) * s, oy + (rows[i] + 0.5) * s, 3.5, 0, 2 * Math.PI); g.stroke(); }
  g.fillStyle = "#5d6b7d"; g.textAlign = "left"; g.fillText(`detector ${ny} x ${nx} pixels (row 0 at top)`, ox, oy - 5);
}
function render() {
  if (!state) return;
  const max = Math.max(state.histogram.length + 5, 30);
  if (threshold === null) threshold = state.min_peaks;
  $("threshold").max = max; $("threshold").value = threshold; $("threshold-number").value = threshold;
  $("frames").textContent = state.frames.toLocaleString("en-US");
  $("hits").textContent = state.hits.toLocaleString("en-US");
  $("hit-def").textContent = `as flagged by the publisher (else >= ${state.min_peaks} peaks)`;
  $("hit-rate").textContent = state.frames ? pct(state.hit_rate) : "\u2013";
  $("recent-rate").textContent = state.frames ? pct(state.recent_hit_rate) : "\u2013";
  $("frame-rate").textContent = state.frame_rate.toFixed(state.frame_rate < 10 ? 1 : 0);
  $("malformed").textContent = state.malformed;
  $("latency").textContent = "frames per second" + (state.latency_ms !== null ? ` \u00b7 latency ${state.latency_ms} ms` : "");
  $("last-frame").textContent = state.last_frame ? `last: frame ${state.last_frame.frame}, ${state.last_frame.npeaks} peaks` : "\u00a0";
  $("series").textContent = state.series ? `series ${state.series}` : "";
  const st = $("status");
  st.className = state.ended ? "ended" : (state.frame_rate > 0 ? "live" : "");
  st.textContent = state.ended ? "series ended" : (state.frame_rate > 0 ? "receiving" : (state.frames ? "idle" : "waiting for frames"));
  const [kept, total] = keptAt(state.histogram, threshold);
  $("kept").textContent = total ? pct(kept / total) : "\u2013";
  $("kept-detail").textContent = `${kept} of ${total} frames have >= ${threshold} peaks`;
  const hit = state.last_hit;
  $("hit-id").textContent = hit ? `frame ${hit.frame}` : "";
  $("hit-info").textContent = hit ? `${hit.npeaks} peaks` + (hit.file ? ` \u2014 ${hit.file}` + (hit.index !== null && hit.index !== undefined ? ` #${hit.index}` : "") : "") : "no hit yet";
  drawStrip(); drawCurve(); drawHistogram(); drawHit();
}
function setThreshold(v) { threshold = Math.max(0, parseInt(v, 10) || 0); render(); }
$("threshold").addEventListener("input", (e) => setThreshold(e.target.value));
$("threshold-number").addEventListener("input", (e) => setThreshold(e.target.value));
window.addEventListener("resize", render);
async function poll() {
  try {
    const response = await fetch("state", { cache: "no-store" });
    const next = await response.json();
    failures = 0;
    if (next.version !== lastVersion || !state) { state = next; lastVersion = next.version; render(); }
    else { state.frame_rate = next.frame_rate; render(); }
  } catch (e) {
    failures += 1;
    if (failures > 2) { const st = $("status"); st.className = "down"; st.textContent = "monitor unreachable"; }
  }
  setTimeout(poll, 500);
}
poll();
</script>
</body>
</html>
"""
