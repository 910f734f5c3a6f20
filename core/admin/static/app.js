// golb's dashboard: one EventSource on /v1/stream, charts drawn on canvas by
// the few functions below, and every text set with textContent, so that
// nothing a worker says can become markup.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  };
  const setText = (e, text) => { text = String(text); if (e.textContent !== text) e.textContent = text; };

  // Indexes into a point's b[balancer] and g[group] arrays (admin.Point).
  const B = { ok: 0, c4: 1, c5: 2, p50: 3, p99: 4, inflight: 5, retries: 6, u503: 7 };
  const G = { desired: 0, running: 1, healthy: 2, draining: 3 };
  const C = {
    ok: "#2e9d4f", c4: "#d9881c", c5: "#d23a32", p50: "#3b73c4", p99: "#8d4cc4",
    inflight: "#3b73c4", retries: "#d9881c", u503: "#d23a32",
    desired: "#888", running: "#3b73c4", healthy: "#2e9d4f", draining: "#d9881c",
  };

  const st = {
    step: 1000, keep: 600, points: [], events: [], snapshot: null,
    balancers: new Map(), groups: new Map(), rows: new Map(),
  };

  // ---- charts -------------------------------------------------------------

  const niceMax = (v) => {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  };
  const short = (v) => (v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k" : String(+v.toFixed(v < 10 ? 1 : 0)));

  // drawChart draws lines ([{color, get(point)}]) over the last ten minutes.
  function drawChart(canvas, lines) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pts = st.points, span = st.keep * st.step;
    const now = pts.length ? pts[pts.length - 1].t : Date.now();
    const t0 = now - span;
    let max = 0, n = 0;
    for (const p of pts) {
      if (p.t < t0) continue;
      n++;
      for (const l of lines) { const v = l.get(p); if (v > max) max = v; }
    }
    max = niceMax(max);
    const left = 30, top = 4, bottom = 4, ph = h - top - bottom, pw = w - left;
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = "#888";
    ctx.strokeStyle = "#e4e4e4";
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(top + ph * (1 - f)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(short(max * f), 2, Math.min(h - 2, Math.max(10, y + 3)));
    }
    ctx.lineWidth = 1.5;
    for (const l of lines) {
      ctx.strokeStyle = l.color;
      ctx.beginPath();
      let first = true;
      for (const p of pts) {
        if (p.t < t0) continue;
        const v = l.get(p);
        if (v === undefined) { first = true; continue; }
        const x = left + ((p.t - t0) / span) * pw, y = top + ph * (1 - v / max);
        if (first) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        first = false;
      }
      ctx.stroke();
    }
    canvas.dataset.points = String(n);
  }

  function chartBox(parent, title, legend) {
    const box = el("div", "chart");
    const head = el("div", "chart-title", title);
    for (const [name, color] of legend) {
      const k = el("span", "key", name);
      k.style.setProperty("--c", color);
      head.append(k);
    }
    const canvas = el("canvas");
    box.append(head, canvas);
    parent.append(box);
    return canvas;
  }

  // ---- balancers ----------------------------------------------------------

  const fmt1 = (v) => (v === undefined ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1));

  function balancerCard(b) {
    let c = st.balancers.get(b.name);
    if (c) return c;
    const card = el("div", "card");
    card.dataset.balancer = b.name;
    const title = el("h3");
    const name = el("span", "", b.name), sub = el("span", "sub");
    title.append(name, sub);
    const now = el("div", "now");
    const charts = el("div", "charts");
    card.append(title, now, charts);
    const key = (p, i) => (p.b[b.name] ? p.b[b.name][i] : undefined);
    c = {
      card, sub, now,
      charts: [
        [chartBox(charts, "requests/s", [["2xx", C.ok], ["4xx", C.c4], ["5xx", C.c5]]), [
          { color: C.ok, get: (p) => key(p, B.ok) }, { color: C.c4, get: (p) => key(p, B.c4) }, { color: C.c5, get: (p) => key(p, B.c5) }]],
        [chartBox(charts, "latency ms", [["p50", C.p50], ["p99", C.p99]]), [
          { color: C.p50, get: (p) => key(p, B.p50) }, { color: C.p99, get: (p) => key(p, B.p99) }]],
        [chartBox(charts, "in flight", [["requests", C.inflight]]), [{ color: C.inflight, get: (p) => key(p, B.inflight) }]],
        [chartBox(charts, "per second", [["retries", C.retries], ["503s", C.u503]]), [
          { color: C.retries, get: (p) => key(p, B.retries) }, { color: C.u503, get: (p) => key(p, B.u503) }]],
      ],
    };
    c.charts[0][0].classList.add("requests-chart");
    $("balancers").append(card);
    st.balancers.set(b.name, c);
    return c;
  }

  function renderBalancer(b, p) {
    const c = balancerCard(b);
    setText(c.sub, ` → group ${b.group} on ${(b.addrs || []).join(", ")}`);
    const v = (p && p.b[b.name]) || [];
    setText(c.now, `2xx ${fmt1(v[B.ok])}/s · 4xx ${fmt1(v[B.c4])}/s · 5xx ${fmt1(v[B.c5])}/s · p50 ${fmt1(v[B.p50])} ms · p99 ${fmt1(v[B.p99])} ms · in flight ${b.in_flight}` +
      (b.held ? ` · held ${b.held}` : "") + ` · retries ${b.retries} · 503s ${b.unavailable} · ${b.requests} requests`);
    for (const [canvas, lines] of c.charts) drawChart(canvas, lines);
  }

  // ---- groups -------------------------------------------------------------

  async function post(path, body) {
    const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    let msg = "";
    try { const j = await r.json(); msg = j.error || ""; } catch (e) { msg = r.statusText; }
    if (!r.ok) throw new Error(msg || r.statusText);
  }

  function groupCard(g) {
    let c = st.groups.get(g.name);
    if (c) return c;
    const card = el("div", "card");
    card.dataset.group = g.name;
    const title = el("h3");
    const sub = el("span", "sub");
    title.append(el("span", "", g.name), sub);
    const counts = el("div", "now"), note = el("div", "note"), scale = el("div", "scale"), decision = el("div", "scale");
    const form = el("form", "scale-form");
    const input = el("input");
    input.type = "number"; input.min = "0"; input.value = String(g.desired); input.name = "count";
    const button = el("button", "", "scale");
    button.type = "submit";
    const msg = el("span", "msg");
    form.append(input, button, msg);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      setText(msg, "…");
      post(`/v1/groups/${encodeURIComponent(g.name)}/scale`, { count: Number(input.value) })
        .then(() => setText(msg, `desired ${input.value}`), (e) => setText(msg, e.message));
    });
    const charts = el("div", "charts");
    card.append(title, counts, note, scale, decision, form, charts);
    const key = (p, i) => (p.g[g.name] ? p.g[g.name][i] : undefined);
    const canvas = chartBox(charts, "workers", [["desired", C.desired], ["running", C.running], ["healthy", C.healthy], ["draining", C.draining]]);
    canvas.classList.add("wide");
    c = { card, sub, counts, note, scale, decision, input, canvas, lines: Object.keys(G).map((k) => ({ color: C[k], get: (p) => key(p, G[k]) })) };
    $("groups").append(card);
    st.groups.set(g.name, c);
    return c;
  }

  function renderGroup(g) {
    const c = groupCard(g);
    setText(c.sub, ` ${g.driver} · min ${g.min} · max ${g.max}`);
    setText(c.counts, `desired ${g.desired} · running ${g.running} · healthy ${g.healthy} · draining ${g.draining} · pending ${g.pending}`);
    c.card.dataset.running = String(g.running);
    setText(c.note, g.failing ? `failing: ${g.reason}` : "");
    c.card.classList.toggle("failing", !!g.failing);
    let s = "fixed count (no scale block)", last = "";
    if (g.scale) {
      s = `autoscaler: ${g.scale.mode}` + (g.scale.rule ? ` · ${g.scale.rule}` : "");
      const d = g.scale.last;
      last = d ? `last decision ${clock(d.time)}: ${d.from} → ${d.to}: ${d.reason}` : "no decision yet";
    }
    setText(c.scale, s);
    setText(c.decision, last);
    if (document.activeElement !== c.input && c.input.dataset.seen !== String(g.desired)) {
      c.input.value = String(g.desired);
      c.input.dataset.seen = String(g.desired);
    }
    drawChart(c.canvas, c.lines);
  }

  // ---- workers ------------------------------------------------------------

  const uptime = (s) => {
    if (!(s > 0)) return "–";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(x).padStart(2, "0")}s` : `${x}s`;
  };

  // stateOf is the row's colour, like HAProxy's page.
  function stateOf(w) {
    switch (w.status) {
      case "running":
        if (w.ejected) return ["ejected", "ejected"];
        if (w.healthy) return ["healthy", "healthy"];
        return w.health_error ? ["unhealthy", "failing: " + w.health_error] : ["starting", "checking"];
      case "pending": return ["starting", "starting"];
      case "draining": return ["draining", "draining"];
      case "gone": return ["gone", w.exit ? "gone: " + w.exit : "gone"];
      case "failed": case "lost":
        return ["failed", [w.exit || w.reason, w.last_words].filter(Boolean).join(": ") || w.status];
      default: return ["stopped", w.status];
    }
  }

  const COLS = ["id", "group", "driver", "address", "status", "health", "in_flight", "requests", "failed", "mean", "uptime", "restarts"];

  function workerRow(w) {
    let r = st.rows.get(w.id);
    if (r) return r;
    const tr = el("tr");
    tr.dataset.id = w.id;
    const cells = {};
    for (const k of COLS) {
      const td = el("td", /^(in_flight|requests|failed|mean|uptime|restarts)$/.test(k) ? "n" : "");
      cells[k] = td;
      tr.append(td);
    }
    const act = el("td");
    const drain = el("button", "drain", "drain");
    drain.type = "button";
    drain.addEventListener("click", () => {
      drain.disabled = true;
      post(`/v1/workers/${encodeURIComponent(w.id)}/drain`, {}).catch((e) => { showError(`drain ${w.id}: ${e.message}`); drain.disabled = false; });
    });
    act.append(drain);
    tr.append(act);
    r = { tr, cells, drain };
    st.rows.set(w.id, r);
    return r;
  }

  function renderWorkers(ws) {
    const order = { gone: 2, failed: 1, lost: 1, stopped: 1 };
    ws = ws.slice().sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0) ||
      (order[a.status] || 0) - (order[b.status] || 0) || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const body = $("workers").tBodies[0];
    const keep = new Set();
    ws.forEach((w, i) => {
      keep.add(w.id);
      const r = workerRow(w);
      const [cls, health] = stateOf(w);
      r.tr.className = "st-" + cls;
      const v = {
        id: w.id, group: w.group, driver: w.driver, address: w.address, status: w.status, health,
        in_flight: w.in_flight, requests: w.requests, failed: w.failed, mean: w.requests ? w.mean_latency_ms.toFixed(1) : "–",
        uptime: w.status === "gone" ? "–" : uptime(w.uptime_s), restarts: w.restarts,
      };
      for (const k of COLS) setText(r.cells[k], v[k]);
      r.cells.health.title = health;
      r.drain.hidden = w.status !== "running";
      if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
    });
    for (const [id, r] of st.rows) if (!keep.has(id)) { r.tr.remove(); st.rows.delete(id); }
  }

  function renderDrivers(ds) {
    const body = $("drivers").tBodies[0];
    const rows = (ds || []).map((d) => {
      const tr = el("tr", d.running && d.reachable ? "st-healthy" : d.running ? "st-unhealthy" : "st-failed");
      for (const [v, n] of [[d.name], [d.version || "–"], [d.reachable ? "yes" : "no"], [d.pid || "–", 1], [d.restarts, 1], [d.error || d.detail || ""]]) {
        tr.append(el("td", n ? "n" : "", v));
      }
      return tr;
    });
    body.replaceChildren(...rows);
  }

  // ---- events -------------------------------------------------------------

  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

  function addEvent(e) {
    const li = el("li", "ev-" + e.kind);
    li.append(el("time", "", clock(e.time)), el("span", "kind", e.kind), el("span", "text", e.text));
    const list = $("events");
    list.prepend(li);
    while (list.children.length > 300) list.lastChild.remove();
  }

  // ---- stream -------------------------------------------------------------

  function showError(msg) {
    const e = $("error");
    setText(e, msg);
    e.hidden = !msg;
  }

  // prune removes the cards of balancers or groups a reload took away.
  function prune(cards, current) {
    const names = new Set((current || []).map((x) => x.name));
    for (const [name, c] of cards) if (!names.has(name)) { c.card.remove(); cards.delete(name); }
  }

  function render() {
    const s = st.snapshot;
    if (!s) return;
    const p = st.points[st.points.length - 1];
    for (const b of s.balancers || []) renderBalancer(b, p);
    for (const g of s.groups || []) renderGroup(g);
    prune(st.balancers, s.balancers);
    prune(st.groups, s.groups);
    renderWorkers(s.workers || []);
    renderDrivers(s.drivers);
    setText($("clock"), clock(s.t));
  }

  function connect() {
    const es = new EventSource("/v1/stream");
    const conn = $("conn");
    es.onopen = () => { setText(conn, "live"); conn.className = "conn on"; };
    es.onerror = () => {
      conn.className = "conn off";
      if (es.readyState !== EventSource.CLOSED) { setText(conn, "reconnecting…"); return; }
      // A refused stream (a 503 when too many dashboards are open, or any
      // answer but 200) is not retried by the browser itself: try again in
      // 10 s, as the 503's Retry-After says.
      setText(conn, "refused by golb (too many dashboards open?); retrying in 10 s");
      setTimeout(connect, 10000);
    };
    es.addEventListener("history", (m) => {
      const h = JSON.parse(m.data);
      st.step = h.step_ms || 1000;
      st.points = h.points || [];
      $("events").replaceChildren();
      for (const e of h.events || []) addEvent(e);
    });
    es.addEventListener("snapshot", (m) => {
      const s = JSON.parse(m.data);
      const last = st.points[st.points.length - 1];
      if (!last || s.point.t > last.t) st.points.push(s.point);
      while (st.points.length > st.keep) st.points.shift();
      st.snapshot = s;
      render();
    });
    es.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
  }

  // For tests and the curious: what the page holds.
  window.golbDashboard = {
    points: () => st.points.length,
    requests: (name) => st.points.reduce((n, p) => n + (p.b[name] ? p.b[name][B.ok] + p.b[name][B.c4] + p.b[name][B.c5] : 0), 0),
  };
  window.addEventListener("resize", render);
  connect();
})();
