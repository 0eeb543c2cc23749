// The tradewarden dashboard: the control API read with the bearer token in a header, the event
// stream read with fetch() (EventSource cannot send headers), charts drawn by hand on canvas.
"use strict";

const MAX_POINTS = 3000;
const MAX_EVENTS = 300;
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

const app = {
  token: null,
  status: null,
  statusAt: 0,         // performance.now() of the last status, to age the heartbeat between polls
  points: [],          // {t: ms, equity, peak}
  markers: [],         // {t: ms, kind: "trigger" | "close", equity?, label}
  events: [],          // newest first
  types: new Set(),
  stream: null,        // AbortController of the running stream
  poller: null,
  fleet: false,        // serving a fleet (`tradewarden fleet`): one row per account, no charts
};

function auth() { return { authorization: "Bearer " + app.token }; }

class Unauthorised extends Error {}

async function api(method, path, body) {
  const options = { method, headers: auth(), cache: "no-store" };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = { error: "HTTP " + response.status }; }
  if (response.status === 401) throw new Unauthorised(data.error || "unauthorised");
  return { status: response.status, ok: response.ok, data };
}

// -- formatting ---------------------------------------------------------------------------------

const money = (x) => x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
// A price as the API gives it, every digit kept (1.08505, 151.234, 100): money's two decimals hid the pips.
const price = (x) => Number(x).toLocaleString(undefined, { maximumFractionDigits: 10 });
const pct = (x) => (100 * x).toFixed(2) + "%";
const clock = (ms) => new Date(ms).toLocaleTimeString();
const capitalised = (text) => text.charAt(0).toUpperCase() + text.slice(1);  // the API's message, as a sentence
function ago(seconds) {
  if (seconds < 60) return seconds.toFixed(1) + "s ago";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m " + Math.floor(seconds % 60) + "s ago";
  return Math.floor(seconds / 3600) + "h " + Math.floor((seconds % 3600) / 60) + "m ago";
}
function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}
function rows(tbody, items, fill) {
  tbody.replaceChildren(...items.map((item) => { const tr = document.createElement("tr"); fill(tr, item); return tr; }));
}

// -- login --------------------------------------------------------------------------------------

async function connect(token) {
  app.token = token;
  let answer;
  try {
    answer = await api("GET", "/api/status");
  } catch (error) {
    app.token = null;
    sessionStorage.removeItem("tradewarden-token");
    $("login-error").textContent = error instanceof Unauthorised ? "Refused: " + error.message : "No answer from the control API: " + error.message;
    return;
  }
  sessionStorage.setItem("tradewarden-token", token);
  $("login-error").textContent = "";
  $("login").hidden = true;
  if (answer.status === 404) { await startFleet(); return; }  // a fleet's server has no single status
  $("dashboard").hidden = false;
  showStatus(answer.data);
  await loadHistory();
  startStream();
  app.poller = setInterval(refresh, POLL_MS);
}

function logout(why) {
  clearInterval(app.poller);
  if (app.stream) app.stream.abort();
  app.token = null;
  sessionStorage.removeItem("tradewarden-token");
  $("dashboard").hidden = true;
  $("fleet").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why;
}

async function guarded(work) {
  try {
    return await work();
  } catch (error) {
    if (error instanceof Unauthorised) logout("Refused: " + error.message);
    else $(app.fleet ? "fleet-message" : "action-message").textContent = "No answer from the control API: " + error.message;
    return null;
  }
}

// -- status -------------------------------------------------------------------------------------

async function refresh() {
  const answer = await guarded(() => api("GET", "/api/status"));
  if (answer && answer.ok) showStatus(answer.data);
  else if (answer) $("action-message").textContent = answer.data.error;
}

// Where each part of a status that can be stale is marked: the guard's answer (the badge, the
// figures and the limits), the positions listed after it, the supervisor's list of actors.
const STALE_MARKERS = { guard: "state-stale", positions: "positions-stale", supervisor: "children-stale" };

function showStale(part, why) {
  // A part shown from an earlier answer, or not at all, says so beside it, as `tradewarden status` does.
  const marker = $(STALE_MARKERS[part]);
  marker.hidden = !why;
  marker.textContent = why ? "stale: " + why.reason + "; " + (why.as_of ? "shown as of " + ago(why.age_seconds) : "not shown") : "";
}

function showBadge(state, reason, since, stale) {
  const badge = $("state-badge");
  badge.textContent = state.toUpperCase();
  badge.className = "badge " + state + (stale ? " stale" : "");
  $("state-reason").textContent = reason || "";
  $("state-since").textContent = since ? "since " + new Date(since).toLocaleString() : "";
  showStale("guard", stale);
}

function showStatus(s) {
  app.status = s;
  app.statusAt = performance.now();
  $("loop-id").textContent = s.loop_id;
  showBadge(s.trading_state, s.reason, s.state_since, s.stale.guard);
  $("equity").textContent = money(s.equity);
  $("peak").textContent = money(s.peak_equity);
  $("drawdown").textContent = pct(s.drawdown);
  rows($("limits"), s.limits, (tr, l) => {
    cell(tr, l.guard + (l.guard === "max_drawdown" ? (l.trailing ? " (trailing " : " (static floor ") + l.limit_percent + "%)" : ""));
    cell(tr, money(l.breach_at));
    cell(tr, l.warn_at === null ? "–" : money(l.warn_at));
    cell(tr, money(l.headroom) + " (" + pct(l.headroom / (s.equity || 1)) + ")", l.headroom <= 0 ? "neg" : "");
  });
  const held = s.positions || [];
  rows($("positions"), held.length ? held : [null], (tr, p) => {
    if (p === null) { cell(tr, s.positions === null ? "unknown" : "none", s.positions === null ? "neg" : ""); return; }
    cell(tr, p.symbol); cell(tr, p.side); cell(tr, String(p.volume)); cell(tr, price(p.entry_price));
    cell(tr, money(p.unrealised_pnl), p.unrealised_pnl < 0 ? "neg" : "");
  });
  rows($("restarts"), Object.entries(s.children), (tr, [name, c]) => {
    cell(tr, name + (c.alive ? "" : " (down)"), c.alive ? "" : "neg"); cell(tr, "#" + c.incarnation); cell(tr, String(c.restarts));
  });
  showStale("positions", s.stale.positions);
  showStale("supervisor", s.stale.supervisor);
  showHeartbeat();
  if (s.last_check_time) addPoint(Date.parse(s.last_check_time), s.equity, s.peak_equity);
  draw();
}

function showHeartbeat() {
  const beat = app.status && app.status.last_heartbeat;
  if (!beat) { $("heartbeat").textContent = "none yet"; return; }
  const age = beat.age_seconds + (performance.now() - app.statusAt) / 1000;
  $("heartbeat").textContent = "#" + beat.beat + " at " + new Date(beat.at).toLocaleTimeString() + ", " + ago(age);
}

// -- a fleet ------------------------------------------------------------------------------------

const FLEET_POLL_MS = 2000;

async function startFleet() {
  app.fleet = true;
  $("fleet").hidden = false;
  $("stream-state").hidden = true;  // a fleet is polled: each account has its own journal
  await refreshFleet();
  app.poller = setInterval(refreshFleet, FLEET_POLL_MS);
}

async function refreshFleet() {
  const answer = await guarded(() => api("GET", "/api/fleet"));
  if (!answer) return;
  if (!answer.ok) { $("fleet-message").textContent = answer.data.error; return; }
  showFleet(answer.data);
}

function counted(byAccount) {
  const entries = Object.entries(byAccount);
  return entries.length ? entries.map(([account, n]) => account + " ×" + n).join(", ") : "none";
}

function showFleet(f) {
  $("loop-id").textContent = "fleet " + f.namespace;
  rows($("fleet-accounts"), f.accounts.length ? f.accounts : [null], (tr, a) => {
    if (a === null) { cell(tr, "no accounts in this fleet"); return; }
    tr.dataset.account = a.account_id;
    const missing = (x, show) => (x === null ? "–" : show(x));
    cell(tr, a.account_id);
    cell(tr, a.health, a.health === "ok" ? "" : "neg");
    cell(tr, missing(a.trading_state, (x) => x.toUpperCase()), a.trading_state === "active" ? "" : "neg");
    cell(tr, money(a.equity));
    cell(tr, money(a.peak));
    cell(tr, missing(a.drawdown, pct));
    cell(tr, missing(a.node, (x) => x.slice(0, 8)));
    cell(tr, missing(a.pid, String));
    cell(tr, missing(a.epoch, String));
    cell(tr, a.detail);
    const actions = document.createElement("td");
    for (const [label, action, style] of [["Halt", "halt", "danger"], ["Resume", "resume", ""]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.className = style;
      button.dataset.action = action;
      button.addEventListener("click", () => fleetAct(a.account_id, action));
      actions.appendChild(button);
    }
    tr.appendChild(actions);
  });
  $("fleet-counters").textContent = "re-created by the controller: " + counted(f.counters.recreated) +
    "; zombies killed: " + counted(f.counters.zombies_killed);
}

function fleetHaltBody() {
  return { reason: $("fleet-reason").value.trim() || "halted from the dashboard", by: "dashboard" };
}

// One account's part in the fleet's halt, in words: halted, pending (it starts HALTED), or why not.
function haltOutcome(o) {
  if (o.done === "halted") return o.account_id + ": halted (was " + o.previous_state + ")";
  if (o.done === "halt_pending") return o.account_id + ": halt pending: " + o.detail;
  return o.account_id + ": " + o.done.replace("_", " ") + ": " + o.error;
}

// The fleet's kill switch: every account at once. The summary says whether the halt holds
// everywhere (an account still starting holds it as pending, not halted yet), and the list below
// it says what each account did, and why for one whose halt does not hold.
async function fleetHaltAll() {
  $("fleet-message").textContent = "";
  const list = $("fleet-outcomes");
  list.replaceChildren();
  const answer = await guarded(() => api("POST", "/api/fleet/halt", fleetHaltBody()));
  if (answer) {
    const outcomes = answer.data.accounts || [];
    const pending = outcomes.filter((o) => o.done === "halt_pending").length;
    $("fleet-message").textContent = !answer.ok ? answer.data.error
      : pending ? "The halt holds for every account (" + outcomes.length + "): " + (outcomes.length - pending) +
        " halted, " + pending + " pending (starting: it starts HALTED)"
      : "Halted every account (" + outcomes.length + ")";
    for (const o of outcomes) {
      const item = document.createElement("li");
      item.textContent = haltOutcome(o);
      item.dataset.done = o.done;
      if (o.done !== "halted" && o.done !== "halt_pending") item.className = "neg";
      list.appendChild(item);
    }
  }
  await refreshFleet();
}

async function fleetAct(account, action) {
  const body = action === "halt" ? fleetHaltBody() : { by: "dashboard" };
  $("fleet-message").textContent = "";
  $("fleet-outcomes").replaceChildren();
  const answer = await guarded(() => api("POST", "/api/fleet/" + encodeURIComponent(account) + "/" + action, body));
  if (answer) {
    // A resume says what it did in its own words (an ACTIVE account: nothing was resumed).
    $("fleet-message").textContent = !answer.ok ? account + ": " + answer.data.error
      : answer.data.done === "halt_pending" ? "Halt saved: " + answer.data.detail  // 202: still starting
      : action === "halt" ? "Halted " + account + " (was " + answer.data.previous_state + ")"
      : account + ": " + answer.data.message;
  }
  await refreshFleet();
}

// -- series -------------------------------------------------------------------------------------

function addPoint(t, equity, peak) {
  const last = app.points[app.points.length - 1];
  if (last && t < last.t) return;  // the stream and the poll overlap; time only moves on
  if (peak === null) peak = last ? Math.max(last.peak, equity) : equity;
  if (last && t === last.t) { last.equity = equity; last.peak = peak; return; }
  app.points.push({ t, equity, peak });
  if (app.points.length > MAX_POINTS) app.points.splice(0, app.points.length - MAX_POINTS);
}

function equityAt(t) {
  const p = app.points;
  if (!p.length) return null;
  for (let i = p.length - 1; i >= 0; i--) if (p[i].t <= t) return p[i].equity;
  return p[0].equity;
}

function addMarker(event) {
  const t = Date.parse(event.timestamp), m = event.metadata;
  if (app.markers.some((x) => x.id === event.event_id)) return;
  if (event.event_type === "guard_triggered") app.markers.push({ id: event.event_id, t, kind: "trigger", equity: m.equity, label: m.guard });
  else app.markers.push({ id: event.event_id, t, kind: "close", equity: null, label: m.symbol });
}

function takeEvent(event, live) {
  const t = Date.parse(event.timestamp), m = event.metadata;
  if (event.event_type === "heartbeat") addPoint(t, m.account_equity, null);
  if (event.event_type === "rebaselined") addPoint(t, m.new_peak, m.new_peak);
  if (event.event_type === "guard_triggered" || event.event_type === "position_closed") addMarker(event);
  if (live && event.event_type === "trading_state_changed" && m.from !== m.to) {
    // Shown at once from the event itself, as fresh; the status that follows fills in the rest.
    // (A halt pressed again while halted changes neither the reason shown nor since when.)
    showBadge(m.to, m.reason, event.timestamp, null);
  }
  if (!app.types.has(event.event_type)) {
    app.types.add(event.event_type);
    const option = document.createElement("option");
    option.value = option.textContent = event.event_type;
    $("event-filter").appendChild(option);
  }
  app.events.unshift(event);
  if (app.events.length > MAX_EVENTS) app.events.length = MAX_EVENTS;
}

async function loadHistory() {
  const queries = ["type=heartbeat&limit=1000", "type=guard_triggered&limit=200", "type=position_closed&limit=200",
    "type=rebaselined&limit=50", "limit=" + MAX_EVENTS];
  const answers = await guarded(() => Promise.all(queries.map((q) => api("GET", "/api/events?" + q))));
  if (!answers) return;
  const seen = new Map();
  for (const answer of answers) if (answer.ok) for (const e of answer.data.events) seen.set(e.event_id, e);
  const all = [...seen.values()].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  const current = app.points.splice(0);
  for (const e of all) takeEvent(e, false);
  for (const p of current) addPoint(p.t, p.equity, p.peak);
  showEvents();
  draw();
}

// -- the event stream ---------------------------------------------------------------------------

function setLive(on) {
  const flag = $("stream-state");
  flag.textContent = on ? "live" : "offline";
  flag.className = "stream " + (on ? "on" : "off");
}

function onBlock(block) {
  let type = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) type = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return true;
  if (type === "overflow") return false;
  takeEvent(JSON.parse(data), true);
  showEvents();
  draw();
  if (["trading_state_changed", "guard_triggered", "rebaselined", "position_closed", "actor_restarted"].includes(type)) refresh();
  return true;
}

async function startStream() {
  const control = new AbortController();
  app.stream = control;
  let wait = 500;
  while (!control.signal.aborted) {
    try {
      const response = await fetch("/api/events/stream", { headers: auth(), signal: control.signal, cache: "no-store" });
      if (response.status === 401) { logout("Refused: the token no longer works"); return; }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      setLive(true);
      wait = 500;
      let buffer = "", open = true;
      while (open) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while (open && (end = buffer.indexOf("\n\n")) >= 0) {
          open = onBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      reader.cancel().catch(() => {});
    } catch (_) {
      // a dropped connection: reconnect below, after a pause that grows to 10 s
    }
    setLive(false);
    if (control.signal.aborted) return;
    await new Promise((done) => setTimeout(done, wait));
    wait = Math.min(10000, wait * 2);
    refresh();
  }
}

// -- events list --------------------------------------------------------------------------------

function summary(event) {
  const m = event.metadata;
  switch (event.event_type) {
    case "trading_state_changed": return m.from + " → " + m.to + (m.reason ? ": " + m.reason : "");
    case "guard_triggered": return m.reason;
    case "heartbeat": return "#" + m.beat + " equity " + money(m.account_equity) + ", " + m.positions_open + " open";
    case "position_closed": return m.symbol + " " + m.side + " " + m.volume + " at " + m.price + " (" + m.reason + ")";
    case "rebaselined": return "by " + m.by + ": peak " + money(m.old_peak) + " → " + money(m.new_peak);
    default: return JSON.stringify(m);
  }
}

function showEvents() {
  const filter = $("event-filter").value, search = $("event-search").value.toLowerCase();
  const shown = app.events.filter((e) => {
    if (filter === "-heartbeat" ? e.event_type === "heartbeat" : filter && e.event_type !== filter) return false;
    return !search || (e.event_type + " " + summary(e)).toLowerCase().includes(search);
  }).slice(0, 100);
  $("events").replaceChildren(...shown.map((e) => {
    const li = document.createElement("li");
    const time = document.createElement("time"), type = document.createElement("b"), text = document.createElement("span");
    time.textContent = clock(Date.parse(e.timestamp));
    type.textContent = e.event_type;
    text.textContent = summary(e);
    li.dataset.type = e.event_type;
    li.append(time, type, text);
    return li;
  }));
}

// -- charts -------------------------------------------------------------------------------------

const COLOURS = { eq: "#4aa8ff", pk: "#b58cff", lim: "#e5484d", warn: "#e0a100", grid: "#2c3540", text: "#8a949e" };

function canvas(id) {
  const c = $(id), ratio = window.devicePixelRatio || 1;
  const width = c.clientWidth, height = Number(c.getAttribute("height"));
  if (c.width !== Math.round(width * ratio)) { c.width = Math.round(width * ratio); c.height = Math.round(height * ratio); }
  c.style.height = height + "px";
  const g = c.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  return { c, g, width, height };
}

function frame(width, height, lo, hi, t0, t1) {
  const left = 8, right = width - 110, top = 8, bottom = height - 18;
  return {
    x: (t) => left + (t1 === t0 ? right - left : ((t - t0) / (t1 - t0)) * (right - left)),
    y: (v) => bottom - ((v - lo) / (hi - lo || 1)) * (bottom - top),
    left, right, top, bottom, lo, hi, edge: { below: 0, above: 0 },
  };
}

function levelLine(g, f, value, colour, label, dashed) {
  const inside = value >= f.lo && value <= f.hi;
  g.strokeStyle = colour; g.fillStyle = colour;
  if (inside) {
    const y = f.y(value);
    g.setLineDash(dashed ? [5, 4] : []);
    g.beginPath(); g.moveTo(f.left, y); g.lineTo(f.right, y); g.stroke();
    g.setLineDash([]);
    g.fillText(label, f.right + 4, y + 4);
    return;
  }
  // Off the scale: stacked at the edge it lies beyond, so each label stays readable.
  const below = value < f.lo;
  const y = below ? f.bottom - 12 * f.edge.below++ : f.top + 8 + 12 * f.edge.above++;
  g.fillText((below ? "↓ " : "↑ ") + label, f.left + 4, y);
}

function series(g, f, points, key, colour, width) {
  g.strokeStyle = colour; g.lineWidth = width; g.beginPath();
  points.forEach((p, i) => { const x = f.x(p.t), y = f.y(key(p)); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
  g.stroke(); g.lineWidth = 1;
}

function axis(g, f, t0, t1) {
  g.strokeStyle = COLOURS.grid; g.fillStyle = COLOURS.text;
  g.beginPath(); g.moveTo(f.left, f.bottom); g.lineTo(f.right, f.bottom); g.stroke();
  g.fillText(clock(t0), f.left, f.bottom + 13);
  const last = clock(t1);
  g.fillText(last, f.right - g.measureText(last).width, f.bottom + 13);
}

function draw() {
  const s = app.status, points = app.points;
  if (!s || $("dashboard").hidden) return;
  const eq = canvas("equity-chart"), dd = canvas("drawdown-chart");
  $("equity-chart").dataset.points = String(points.length);
  if (points.length < 1) return;
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const values = points.flatMap((p) => [p.equity, p.peak]);
  let lo = Math.min(...values), hi = Math.max(...values);
  const span = Math.max(hi - lo, hi * 0.002);
  // Levels near the curve widen the scale; a far one (a minimum far below) is labelled at the edge.
  const lowestPeak = Math.min(...points.map((p) => p.peak));
  for (const l of s.limits) {
    const levels = [l.breach_at, l.warn_at];
    if (l.guard === "max_drawdown" && l.trailing) levels.push(lowestPeak * (1 - l.limit_percent / 100));
    for (const v of levels) if (v !== null && v > lo - 2 * span) lo = Math.min(lo, v);
  }
  const pad = (hi - lo || span) * 0.06;
  const f = frame(eq.width, eq.height, lo - pad, hi + pad, t0, t1);
  axis(eq.g, f, t0, t1);
  for (const l of s.limits) {
    if (l.guard === "max_drawdown" && l.trailing) {
      // The trailing limit follows the peak, so it is drawn under the peak's own line.
      const below = (fraction) => (p) => p.peak * (1 - fraction);
      series(eq.g, f, points, below(l.limit_percent / 100), COLOURS.lim, 1);
      eq.g.fillText("trailing " + money(l.breach_at), f.right + 4, f.y(l.breach_at) + 4);
      if (l.warn_at !== null) {
        eq.g.setLineDash([5, 4]);
        series(eq.g, f, points, below((s.peak_equity - l.warn_at) / s.peak_equity), COLOURS.warn, 1);
        eq.g.setLineDash([]);
        eq.g.fillText("warn " + money(l.warn_at), f.right + 4, f.y(l.warn_at) + 4);
      }
      continue;
    }
    const name = l.guard === "max_drawdown" ? "floor" : l.guard === "min_equity" ? "min equity" : "daily loss";
    levelLine(eq.g, f, l.breach_at, COLOURS.lim, name + " " + money(l.breach_at), false);
    if (l.warn_at !== null) levelLine(eq.g, f, l.warn_at, COLOURS.warn, "warn " + money(l.warn_at), true);
  }
  series(eq.g, f, points, (p) => p.peak, COLOURS.pk, 1.5);
  series(eq.g, f, points, (p) => p.equity, COLOURS.eq, 2);
  for (const m of app.markers) {
    if (m.t < t0) continue;
    const x = f.x(Math.min(m.t, t1)), v = m.equity !== null ? m.equity : equityAt(m.t);
    if (v === null) continue;
    const y = f.y(Math.max(f.lo, Math.min(f.hi, v)));
    eq.g.fillStyle = m.kind === "trigger" ? COLOURS.lim : COLOURS.warn;
    eq.g.beginPath();
    if (m.kind === "trigger") { eq.g.moveTo(x - 6, y - 10); eq.g.lineTo(x + 6, y - 10); eq.g.lineTo(x, y); } else eq.g.arc(x, y, 4, 0, 2 * Math.PI);
    eq.g.fill();
  }

  // Each limit as a drawdown from the current peak, so all of them read on one scale.
  const drawdowns = points.map((p) => ({ t: p.t, d: p.peak > 0 ? (100 * (p.peak - p.equity)) / p.peak : 0 }));
  const levels = [];
  for (const l of s.limits) {
    const at = (v) => (s.peak_equity > 0 ? (100 * (s.peak_equity - v)) / s.peak_equity : 0);
    const name = l.guard === "max_drawdown" ? (l.trailing ? "trailing" : "floor") : l.guard === "min_equity" ? "min equity" : "daily loss";
    levels.push([at(l.breach_at), COLOURS.lim, name + " " + at(l.breach_at).toFixed(1) + "%", false]);
    if (l.warn_at !== null) levels.push([at(l.warn_at), COLOURS.warn, "warn " + at(l.warn_at).toFixed(1) + "%", true]);
  }
  const worst = Math.max(0.5, ...drawdowns.map((p) => p.d));
  // Scaled to show the nearest limit (and the warnings before it) unless it is far past the worst.
  const nearest = Math.min(...levels.filter((l) => l[1] === COLOURS.lim).map((l) => l[0]).filter((v) => v > 0), Infinity);
  const top = Math.max(worst, nearest === Infinity ? worst : Math.min(nearest, worst * 4)) * 1.15;
  // Drawdown grows downwards, as the equity falls.
  const g = frame(dd.width, dd.height, -top, 0, t0, t1);
  axis(dd.g, g, t0, t1);
  for (const [v, colour, label, dashed] of levels) levelLine(dd.g, g, -v, colour, label, dashed);
  series(dd.g, g, drawdowns, (p) => -p.d, COLOURS.eq, 2);
}

// -- actions ------------------------------------------------------------------------------------

function busy(on) { for (const id of ["halt-button", "resume-button", "rebaseline-yes"]) $(id).disabled = on; }

async function act(path, body, done) {
  busy(true);
  $("action-message").textContent = "";
  const answer = await guarded(() => api("POST", path, body));
  busy(false);
  if (answer) done(answer);
  refresh();
}

function halt() {
  const reason = $("halt-reason").value.trim() || "halted from the dashboard";
  act("/api/halt", { reason, by: "dashboard" }, (a) => {
    $("action-message").textContent = a.ok ? "Halted (was " + a.data.previous_state + "): " + a.data.reason : a.data.error;
  });
}

function resume() {
  $("rebaseline-confirm").hidden = true;
  act("/api/resume", { by: "dashboard" }, (a) => {
    // A rebaseline is offered only when the guard says it would be taken (not past a fixed level).
    $("resume-error").textContent = a.ok ? "" : a.data.error;
    $("rebaseline-button").hidden = !(a.status === 409 && a.data.rebaseline_helps === true);
    if (a.ok) $("action-message").textContent = capitalised(a.data.message);
  });
}

function askRebaseline() {
  const s = app.status;
  $("rebaseline-text").textContent = "Rebaseline: the peak goes from " + money(s.peak_equity) + " to " + money(s.equity) +
    " (today's equity), and the day's start with it. Drawdown is then measured from " + money(s.equity) +
    "; a static floor and a minimum equity stay where they are.";
  $("rebaseline-confirm").hidden = false;
}

function rebaseline() {
  act("/api/resume", { rebaseline: true, by: "dashboard" }, (a) => {
    $("rebaseline-confirm").hidden = true;
    $("resume-error").textContent = a.ok ? "" : a.data.error;
    $("rebaseline-button").hidden = a.ok || a.data.rebaseline_helps !== true;
    if (a.ok) $("action-message").textContent = capitalised(a.data.message);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); connect($("token").value.trim()); });
  $("halt-button").addEventListener("click", halt);
  $("resume-button").addEventListener("click", resume);
  $("fleet-halt-all").addEventListener("click", fleetHaltAll);
  $("rebaseline-button").addEventListener("click", askRebaseline);
  $("rebaseline-yes").addEventListener("click", rebaseline);
  $("rebaseline-no").addEventListener("click", () => { $("rebaseline-confirm").hidden = true; });
  $("event-filter").addEventListener("change", showEvents);
  $("event-search").addEventListener("input", showEvents);
  window.addEventListener("resize", draw);
  setInterval(showHeartbeat, 1000);
  const saved = sessionStorage.getItem("tradewarden-token");
  if (saved) connect(saved);
});
