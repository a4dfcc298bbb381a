// Kanshi's dashboard: recordings, their timeline and LBA x time heat-map (Chart.js), process tree,
// files, alerts with their evidence, and paged, filtered tables of system calls and block records.
// In a downloaded report (window.KANSHI_REPORT) the same page reads the embedded data instead.
"use strict";

const REPORT = window.KANSHI_REPORT || null;
const PAGE = 100;
const $ = (s, el = document) => el.querySelector(s);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return el;
}

function time(ns) {
  if (ns == null) return "";
  const d = new Date(Number(ns) / 1e6);
  return d.toISOString().replace("T", " ").replace("Z", "") ;
}
function bytes(n) {
  n = Number(n || 0);
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function toast(text) {
  const t = $("#toast"); t.textContent = text; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 8000);
}

async function api(path, options = {}) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 && path !== "/api/login") { show("login"); throw new Error(body.error || "log in first"); }
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function show(view) {
  for (const v of ["login", "list", "recording"]) $("#" + v + "-view").hidden = v !== view;
  $("#logout").hidden = !!REPORT || view === "login";
}

// ---- login, list, live alerts ----

async function login(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const r = await api("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: f.get("user"), password: f.get("password") }) });
    $("#login-error").textContent = "";
    $("#who").textContent = r.user;
    start();
  } catch (e) { $("#login-error").textContent = e.message; }
}

let recordings = [];
async function showList() {
  recordings = await api("/api/recordings");
  renderList();
  show("list");
}
function renderList() {
  const q = $("#list-filter").value.toLowerCase();
  const tbody = $("#recordings tbody"); tbody.replaceChildren();
  for (const r of recordings.filter(r => (r.sensor + "/" + r.name).toLowerCase().includes(q))) {
    tbody.append(h("tr", { class: "click", "data-recording": r.sensor + "/" + r.name, onclick: () => openRecording(r.sensor, r.name) },
      h("td", {}, r.sensor), h("td", {}, r.name), h("td", {}, time(r.firstNs)), h("td", {}, time(r.lastNs)),
      h("td", {}, bytes(r.journalBytes)), h("td", {}, r.logEvents), h("td", { class: r.alerts ? "sev-high" : "" }, r.alerts)));
  }
}

let lastAlert = 0, current = null;
async function pollAlerts() {
  try {
    const list = await api("/api/alerts?after=" + lastAlert + "&limit=200");
    const initial = pollAlerts.primed !== true;
    for (const a of list) {
      lastAlert = Math.max(lastAlert, a.id);
      const alert = JSON.parse(a.alert);
      $("#live-alerts").prepend(h("li", { "data-alert": a.rule }, `${time(a.timeNs)} ${a.sensor}/${a.recording}: ${a.rule} (${a.severity}) — ${alert.output}`));
      if (!initial) {
        toast(`ALERT ${a.rule} on ${a.sensor}/${a.recording}: ${alert.output}`);
        if (current && current.sensor === a.sensor && current.name === a.recording) addAlertRow(a);
      }
    }
    pollAlerts.primed = true;
  } catch (e) { /* the next poll tries again */ }
}

// ---- one recording ----

let charts = {};
const state = { events: { cursors: [0], filter: {} }, blocks: { cursors: [0], filter: {} } };

function base() { return `/api/recordings/${encodeURIComponent(current.sensor)}/${encodeURIComponent(current.name)}`; }

async function load(what, query = "") {
  if (REPORT) return REPORT[what];
  return api(base() + "/" + what + (query ? "?" + query : ""));
}

async function openRecording(sensor, name) {
  current = REPORT ? REPORT.recording : recordings.find(r => r.sensor === sensor && r.name === name);
  if (!current) return;
  if (!REPORT) location.hash = "#/" + sensor + "/" + name;
  show("recording");
  $("#rec-title").textContent = `${current.sensor} / ${current.name}`;
  $("#rec-summary").textContent = `${time(current.firstNs)} – ${time(current.lastNs)}; ` +
    (current.journalRecords ? `journal ${bytes(current.journalBytes)} in ${current.journalRecords} records (${current.journalSegment} segment(s)); ` : "no disk journal; ") +
    `${current.logEvents} system-call events; ${current.alerts} alert(s)`;
  const report = $("#rec-report");
  if (REPORT) report.hidden = true; else report.href = base() + "/report";
  for (const k of ["events", "blocks"]) { state[k] = { cursors: [0], filter: {} }; $("#" + k + "-filter").reset(); }
  const [timeline, heat, procs, files, alerts, notes] = await Promise.all([
    load("timeline", "bins=200"), load("heatmap", "timeBins=120&lbaBins=64"), load("processes"), load("files"),
    REPORT ? REPORT.alerts : api(`/api/alerts?sensor=${encodeURIComponent(current.sensor)}&recording=${encodeURIComponent(current.name)}&limit=1000`),
    load("notes")]);
  drawTimeline(timeline);
  drawHeatmap(heat);
  await drawGADF(timeline);
  renderProcesses(procs);
  renderFiles(files);
  $("#alerts tbody").replaceChildren(); for (const a of alerts) addAlertRow(a);
  filterRows("alerts");
  renderNotes(notes);
  filterRows("notes");
  await Promise.all([page("events"), page("blocks")]);
}

function drawTimeline(t) {
  charts.timeline?.destroy();
  const step = (t.toNs - t.fromNs) / t.bins;
  const labels = t.reads.map((_, i) => ((i * step) / 1e9).toFixed(2));
  const alertPoints = t.alerts.map((n, i) => n ? { x: labels[i], y: Math.max(1, ...t.writes, ...t.reads, ...t.events) } : null).filter(Boolean);
  charts.timeline = new Chart($("#timeline"), {
    type: "bar",
    data: { labels, datasets: [
      { label: "block writes", data: t.writes, backgroundColor: "rgba(200,40,40,.7)" },
      { label: "block reads", data: t.reads, backgroundColor: "rgba(40,90,200,.7)" },
      { label: "system calls", data: t.events, type: "line", borderColor: "#2a9d8f", pointRadius: 0, borderWidth: 1 },
      { label: "alerts", data: alertPoints, type: "scatter", backgroundColor: "#000", pointStyle: "triangle", pointRadius: 7 },
    ] },
    options: { animation: false, maintainAspectRatio: false, scales: { x: { title: { display: true, text: "seconds from the start" } } },
      onClick: (e, els) => { if (els.length) drill("time", t.fromNs + els[0].index * step, t.fromNs + (els[0].index + 1) * step); } },
  });
}

function drawHeatmap(m) {
  charts.heatmap?.destroy();
  const step = (m.toNs - m.fromNs) / m.timeBins, lbaStep = m.maxLba / m.lbaBins;
  const max = Math.max(1, ...m.reads.map(c => c[2]), ...m.writes.map(c => c[2]));
  const points = (cells, rgb) => ({
    data: cells.map(([tb, lb, n]) => ({ x: (tb * step) / 1e9, y: (lb * lbaStep * 512) / 1048576, n, tb, lb })),
    pointStyle: "rect", pointRadius: 4,
    backgroundColor: cells.map(([, , n]) => `rgba(${rgb},${(0.25 + 0.75 * n / max).toFixed(2)})`),
  });
  charts.heatmap = new Chart($("#heatmap"), {
    type: "scatter",
    data: { datasets: [Object.assign({ label: "writes" }, points(m.writes, "200,40,40")), Object.assign({ label: "reads" }, points(m.reads, "40,90,200"))] },
    options: { animation: false, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "seconds from the start" } }, y: { title: { display: true, text: "disk offset (MiB)" } } },
      plugins: { tooltip: { callbacks: { label: c => `${c.dataset.label}: ${c.raw.n} at ${c.raw.x.toFixed(2)} s, ${c.raw.y.toFixed(1)} MiB` } } },
      onClick: (e, els) => {
        if (!els.length) return;
        const p = els[0].element.$context.raw;
        drill("cell", m.fromNs + p.tb * step, m.fromNs + (p.tb + 1) * step, Math.floor(p.lb * lbaStep), Math.ceil((p.lb + 1) * lbaStep));
      } },
  });
}

const GADF_BINS = 64;
async function drawGADF(extent) {
  const box = $("#gadf"); box.replaceChildren();
  const names = REPORT ? Object.keys(REPORT.gadf).sort() : await api(base() + "/gadf");
  if (!names.length) box.append(h("p", {}, "No series varies over this recording."));
  // A pixel (i, j) relates intervals i and j of the series: a click shows what happened from one to the other.
  const click = e => {
    const r = e.target.getBoundingClientRect();
    const i = Math.floor((e.clientY - r.top) / r.height * GADF_BINS), j = Math.floor((e.clientX - r.left) / r.width * GADF_BINS);
    const step = (extent.toNs - extent.fromNs) / GADF_BINS;
    drill("time", extent.fromNs + Math.min(i, j) * step, extent.fromNs + (Math.max(i, j) + 1) * step);
  };
  for (const s of names) {
    const src = REPORT ? REPORT.gadf[s] : base() + "/gadf/" + s + ".bmp?size=" + GADF_BINS;
    box.append(h("figure", { "data-series": s }, h("img", { src, alt: "GADF of " + s, title: "click: the records between the two intervals", onclick: click }),
      h("figcaption", {}, s)));
  }
}

// Drill-down from a chart: the tables below show the records of that interval (and LBA range).
// Times in ns pass through doubles here (2^53 < 1.8e18): the window is widened by a microsecond
// each side so rounding never drops the records at its edges.
const EDGE_NS = 1000;
function drill(kind, from, to, lbaFrom, lbaTo) {
  from = Math.floor(from) - EDGE_NS; to = Math.ceil(to) + EDGE_NS;
  state.events = { cursors: [0], filter: Object.assign({}, state.events.filter, { from, to }) };
  state.blocks = { cursors: [0], filter: Object.assign({}, state.blocks.filter, { from, to }, kind === "cell" ? { lbaFrom, lbaTo } : {}) };
  const label = `${time(from)} – ${time(to)}` + (kind === "cell" ? `, LBA ${lbaFrom}–${lbaTo}` : "");
  $("#events-range").textContent = label; $("#blocks-range").textContent = label;
  Promise.all([page("events"), page("blocks")]).then(() => $("#blocks").scrollIntoView());
}

function renderProcesses(list) {
  const byParent = new Map();
  const known = new Set(list.map(p => p.pid));
  for (const p of list) {
    const parent = p.parent != null && known.has(p.parent) ? p.parent : null;
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(p);
  }
  const node = p => h("li", { "data-pid": p.pid },
    h("a", { href: "#", onclick: e => { e.preventDefault(); filterEvents({ pid: p.pid }); } }, `${p.pid}`), " ",
    (p.argv || []).join(" ") || (p.parent != null ? `(forked by ${p.parent}, no exec seen)` : "(no exec seen)"), " ",
    p.managed ? h("span", { class: "managed" }, `managed: ${p.managed}`) : "",
    p.blockedCalls ? h("span", { class: "blocked" }, ` ${p.blockedCalls} call(s) refused`) : "",
    ` — ${p.events} events` + (p.exitCode != null ? `, exit ${p.exitCode}` : ""),
    byParent.has(p.pid) ? h("ul", {}, byParent.get(p.pid).map(node)) : "");
  $("#processes").replaceChildren(...(byParent.get(null) || []).map(node));
}

let files = [];
function renderFiles(list) {
  if (list) files = list;
  const q = $("#files-filter").value;
  $("#files tbody").replaceChildren(...files.filter(f => f.path.includes(q)).map(f => h("tr", {},
    h("td", {}, f.path), h("td", {}, f.how.join(", ")), h("td", {}, f.pids.join(" ")), h("td", {}, time(f.firstNs)), h("td", {}, time(f.lastNs)),
    h("td", { class: f.managed ? "managed" : "" }, f.managed ? "yes" : ""), h("td", { class: f.restored ? "restored" : "" }, f.restored || ""))));
}

function addAlertRow(a) {
  const alert = JSON.parse(a.alert);
  const evidence = (alert.evidence || []).map(e => h("a", { class: "evidence", "data-seq": e.seq, onclick: () => showEvidence(a.source, e.seq) }, `${e.ev}#${e.seq}`));
  $("#alerts tbody").append(h("tr", { "data-rule": a.rule },
    h("td", {}, time(a.timeNs)), h("td", {}, a.rule), h("td", { class: "sev-" + a.severity }, a.severity), h("td", {}, a.source),
    h("td", {}, alert.output), h("td", {}, evidence)));
}

// The alerts and notes tables are whole (a recording has few): a filter hides the rows without the text.
function filterRows(table) {
  const q = $("#" + table + "-filter").value.toLowerCase();
  for (const tr of $("#" + table + " tbody").children) tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q);
}

function showEvidence(source, seq) {
  const table = source === "journal" ? "blocks" : "events";
  state[table] = { cursors: [Math.max(0, seq - 1)], filter: {} };
  page(table, seq).then(() => $("#" + table).scrollIntoView());
}

function renderNotes(list) {
  $("#notes tbody").replaceChildren(...(list || []).map(n => h("tr", {}, h("td", {}, n.seq), h("td", {}, time(n.time_ns)), h("td", {}, n.json))));
}

function filterEvents(f) {
  state.events = { cursors: [0], filter: f };
  page("events").then(() => $("#events").scrollIntoView());
}

// One page of a table, from the cursor on top of its stack, with its filter.
async function page(table, highlight) {
  const s = state[table];
  const after = s.cursors[s.cursors.length - 1];
  let rows;
  if (REPORT) {
    const f = s.filter;
    rows = REPORT[table].filter(r => r.seq > after
      && (f.from == null || r.time_ns >= f.from) && (f.to == null || r.time_ns <= f.to)
      && (!f.ev || r.ev === f.ev) && (f.pid == null || f.pid === "" || r.pid === Number(f.pid)) && (!f.path || (r.path || "").includes(f.path))
      && (!f.managed || r.managed === 1) && (!f.op || r.op === f.op)
      && (f.lbaFrom == null || f.lbaFrom === "" || r.lba + Math.ceil(r.length / 512) > Number(f.lbaFrom))
      && (f.lbaTo == null || f.lbaTo === "" || r.lba < Number(f.lbaTo))).slice(0, PAGE);
  } else {
    const q = new URLSearchParams({ after, limit: PAGE });
    for (const [k, v] of Object.entries(s.filter)) if (v !== "" && v != null) q.set(k, v);
    rows = await load(table, q.toString());
  }
  s.last = rows.length ? rows[rows.length - 1].seq : after;
  s.full = rows.length === PAGE;
  const tbody = $("#" + table + " tbody");
  tbody.replaceChildren(...rows.map(r => table === "events"
    ? h("tr", { "data-seq": r.seq, class: r.seq === highlight ? "hit" : "" },
        h("td", {}, r.seq), h("td", {}, time(r.time_ns)), h("td", {}, r.ev), h("td", {}, r.pid),
        h("td", {}, [r.path, r.path2].filter(Boolean).join(" → ")), h("td", { class: r.managed ? "managed" : "" }, r.managed ? "yes" : ""),
        h("td", { class: r.blocked ? "blocked" : "" }, r.blocked ? "refused" : ""), h("td", {}, r.reason || ""))
    : h("tr", { "data-seq": r.seq, class: r.seq === highlight ? "hit" : "" },
        h("td", {}, r.seq), h("td", {}, time(r.time_ns)), h("td", {}, r.op), h("td", {}, r.lba), h("td", {}, r.length),
        h("td", {}, r.entropy == null ? "" : Number(r.entropy).toFixed(2)), h("td", {}, `segment ${r.segment} byte ${r.offset}`))));
  const pager = $(`.pager[data-for="${table}"]`);
  pager.querySelector(".prev").disabled = s.cursors.length < 2;
  pager.querySelector(".next").disabled = !s.full;
}

function wireTable(table) {
  const form = $("#" + table + "-filter");
  form.addEventListener("submit", e => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form).entries());
    const keep = state[table].filter;
    state[table] = { cursors: [0], filter: Object.assign({ from: keep.from, to: keep.to }, f) };
    page(table);
  });
  form.querySelector(".clear").addEventListener("click", () => {
    form.reset(); state[table] = { cursors: [0], filter: {} }; $("#" + table + "-range").textContent = ""; page(table);
  });
  const pager = $(`.pager[data-for="${table}"]`);
  pager.querySelector(".next").addEventListener("click", () => { state[table].cursors.push(state[table].last); page(table); });
  pager.querySelector(".prev").addEventListener("click", () => { if (state[table].cursors.length > 1) state[table].cursors.pop(); page(table); });
}

// ---- start ----

async function start() {
  if (REPORT) { await openRecording(); return; }
  try {
    const me = await api("/api/whoami");
    $("#who").textContent = me.user;
  } catch (e) { return; }
  await showList();
  await pollAlerts();
  clearInterval(start.timer);
  start.timer = setInterval(pollAlerts, 1000);
  const m = location.hash.match(/^#\/([^/]+)\/(.+)$/);
  if (m) openRecording(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#list-filter").addEventListener("input", renderList);
  $("#files-filter").addEventListener("input", () => renderFiles());
  $("#alerts-filter").addEventListener("input", () => filterRows("alerts"));
  $("#notes-filter").addEventListener("input", () => filterRows("notes"));
  $("#home").addEventListener("click", e => { e.preventDefault(); if (!REPORT) { current = null; location.hash = ""; showList(); } });
  $("#logout").addEventListener("click", async () => { await fetch("/api/logout", { method: "POST" }); location.hash = ""; show("login"); });
  wireTable("events"); wireTable("blocks");
  start();
});
