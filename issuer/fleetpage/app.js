// The fleet page: plain JS, no framework. It loads /fleet/api/fleet and
// /fleet/api/summary, then follows /fleet/api/events (server-sent
// events): "summary" redraws the header, "devices" (the registry
// changed) fetches the fleet again. The device table renders only the
// rows in view, so 10,000 devices scroll as fast as 30.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const ROW = 28;
  let devices = [];      // FleetDevice[], as the API sends them
  let shown = [];        // the filtered, sorted view
  let serverSkew = 0;    // issuer time minus browser time, seconds
  let sortKey = "id", sortDir = 1;
  let fetching = false, again = false;

  const now = () => Date.now() / 1000 + serverSkew;

  function left(sec) {
    if (sec <= 0) return "expired";
    if (sec < 60) return Math.floor(sec) + "s";
    if (sec < 3600) return Math.floor(sec / 60) + "m " + Math.floor(sec % 60) + "s";
    return Math.floor(sec / 3600) + "h " + Math.floor((sec % 3600) / 60) + "m";
  }
  function when(unix) {
    if (!unix) return "–";
    const d = new Date(unix * 1000);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // globRe turns a path.Match glob (* ? [...] \x) into a RegExp, as
  // fleet status --device reads it; null when the glob is malformed.
  function globRe(g) {
    let re = "^";
    for (let i = 0; i < g.length; i++) {
      const c = g[i];
      if (c === "*") re += "[^/]*";
      else if (c === "?") re += "[^/]";
      else if (c === "\\" && i + 1 < g.length) re += "\\" + g[++i];
      else if (c === "[") {
        const j = g.indexOf("]", i + 2);
        if (j < 0) return null;
        let cls = g.slice(i + 1, j).replace(/\\/g, "\\\\");
        if (cls[0] === "^") cls = "\\^" + cls.slice(1);
        if (cls[0] === "!") cls = "^" + cls.slice(1);
        re += "[" + cls + "]";
        i = j;
      } else re += c.replace(/[.+^${}()|\]]/g, "\\$&");
    }
    try { return new RegExp(re + "$"); } catch (e) { return null; }
  }

  // Per device, what filters and sorting need, computed once per fetch.
  function prepare(d) {
    let e = 0;
    for (const t of d.tokens) if (!e || t.expires_at < e) e = t.expires_at;
    d._earliest = e;
    d._kids = [...new Set(d.tokens.map((t) => t.kid))].sort();
    d._kidText = d._kids.join(", ") || "–";
  }

  function filter() {
    const q = $("q").value.trim();
    const re = q ? globRe(q) : null;
    $("q").classList.toggle("bad", q !== "" && !re);
    const off = $("f-offline").checked, exp = $("f-expiring").checked,
      ref = $("f-refused").checked, kid = $("f-kid").value;
    const t = now(), soon = t + 600;
    shown = devices.filter((d) =>
      (!q || (re && re.test(d.device))) &&
      (!off || !d.online) &&
      (!exp || (d._earliest && d._earliest <= soon)) &&
      (!ref || (d.refused && d.refused.length)) &&
      (!kid || d._kids.includes(kid)));
    const key = {
      id: (d) => d.device, online: (d) => (d.online ? 1 : 0), agent: (d) => d.agent || "",
      kid: (d) => d._kidText, left: (d) => d._earliest || Infinity, at: (d) => d.at || 0,
    }[sortKey];
    shown.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : a.device < b.device ? -1 : 1) * sortDir;
    });
    for (const s of document.querySelectorAll("#thead span")) {
      s.classList.toggle("asc", s.dataset.sort === sortKey && sortDir > 0);
      s.classList.toggle("desc", s.dataset.sort === sortKey && sortDir < 0);
    }
    $("shown").textContent = shown.length + " of " + devices.length;
    $("spacer").style.height = shown.length * ROW + "px";
    drawRows(true);
  }

  // drawRows renders the rows in view (and a few around them) only.
  let drawn = "";
  function drawRows(force) {
    const sc = $("scroller");
    const first = Math.max(0, Math.floor(sc.scrollTop / ROW) - 10);
    const last = Math.min(shown.length, Math.ceil((sc.scrollTop + sc.clientHeight) / ROW) + 10);
    const k = first + ":" + last;
    if (!force && k === drawn) return;
    drawn = k;
    const sp = $("spacer"), frag = document.createDocumentFragment(), t = now();
    for (let i = first; i < last; i++) {
      const d = shown[i], r = el("div", "r");
      r.style.top = i * ROW + "px";
      r.dataset.device = d.device;
      r.append(el("span", "", d.device));
      r.append(el("span", d.online ? "on" : "offl", d.online ? "online" : "offline"));
      r.append(el("span", "hide-s", d.agent || "–"));
      r.append(el("span", "", d._kidText));
      const l = d._earliest ? d._earliest - t : 0;
      const ls = el("span", d._earliest && l <= 600 ? "exp" : "", d._earliest ? left(l) : "–");
      if (d.refused && d.refused.length) { ls.append(el("span", "ref", " refused")); }
      r.append(ls);
      r.append(el("span", "hide-s", when(d.at)));
      frag.append(r);
    }
    sp.replaceChildren(frag);
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  async function loadDevices() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const f = await getJSON("api/fleet");
      for (const d of f.devices) prepare(d);
      devices = f.devices;
      filter();
      document.body.dataset.devices = String(devices.length);
      if (!document.body.dataset.ready) {
        document.body.dataset.ready = String(Math.round(performance.now()));
      }
    } catch (e) {
      setLive(false, "error");
    } finally {
      fetching = false;
      if (again) { again = false; loadDevices(); }
    }
  }

  function chart(svg, pts, val) {
    const n = pts.length, vs = pts.map(val), max = Math.max(...vs, 1e-12);
    let d = "";
    vs.forEach((v, i) => {
      d += (i ? "L" : "M") + ((i / Math.max(n - 1, 1)) * 360).toFixed(1) + " " + (58 - (v / max) * 56).toFixed(1);
    });
    svg.replaceChildren();
    const ns = "http://www.w3.org/2000/svg";
    const a = document.createElementNS(ns, "path");
    a.setAttribute("class", "a"); a.setAttribute("d", d + "L360 60L0 60Z");
    const l = document.createElementNS(ns, "path");
    l.setAttribute("class", "l"); l.setAttribute("d", d);
    svg.append(a, l);
    return max;
  }
  function fmtLat(s) {
    if (!s) return "–";
    if (s < 1e-3) return Math.round(s * 1e6) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    return s.toFixed(2) + " s";
  }

  function drawSummary(s) {
    serverSkew = s.now - Date.now() / 1000;
    $("issuer").textContent = s.issuer + " · signing with " + s.active;
    $("c-devices").textContent = s.totals.devices;
    $("c-online").textContent = s.totals.online;
    $("c-offline").textContent = s.totals.offline;
    $("c-expiring").textContent = s.expiring;
    $("c-refused").textContent = s.refused;
    const kids = new Set([...(s.certificates || []), ...Object.keys(s.totals.per_kid || {})]);
    const ul = $("kids");
    ul.replaceChildren();
    const sel = $("f-kid"), cur = sel.value;
    sel.replaceChildren(el("option", "", "any kid"));
    sel.firstChild.value = "";
    for (const k of [...kids].sort()) {
      const li = el("li", k === s.active ? "active" : "");
      const name = el("b", "", k);
      li.dataset.kid = k;
      if (k === s.active) name.append(el("span", "tag", "active"));
      li.append(name, el("span", "", String((s.totals.per_kid || {})[k] || 0) + " devices"));
      ul.append(li);
      const o = el("option", "", k); o.value = k; sel.append(o);
    }
    sel.value = cur;
    const pts = s.charts.points;
    chart($("chart-rps"), pts, (p) => p.rps);
    chart($("chart-p99"), pts, (p) => p.p99);
    const lastRps = pts.length ? pts[pts.length - 1].rps : 0;
    $("rps-now").textContent = lastRps.toFixed(1) + " now, max " + Math.max(0, ...pts.map((p) => p.rps)).toFixed(1);
    $("p99-now").textContent = fmtLat(pts.length ? pts[pts.length - 1].p99 : 0) + " now, max " + fmtLat(Math.max(0, ...pts.map((p) => p.p99)));
    drawCampaign(s.campaign);
    drawRows(true); // time left moves on
  }

  function drawCampaign(c) {
    const box = $("campaign");
    if (!c) { box.hidden = true; return; }
    box.hidden = false;
    const all = c.done + c.todo + c.stragglers;
    const pct = all ? (100 * c.done) / all : 100;
    $("cp-to").textContent = c.to;
    $("cp-id").textContent = c.id + " · started " + when(c.started_at);
    $("cp-done").style.width = pct + "%";
    $("cp-strag").style.width = (all ? (100 * c.stragglers) / all : 0) + "%";
    $("cp-bar").setAttribute("aria-valuenow", String(Math.round(pct)));
    $("cp-bar").dataset.complete = String(c.complete);
    $("cp-n-done").textContent = c.done;
    $("cp-n-todo").textContent = c.todo;
    $("cp-n-strag").textContent = c.stragglers;
    $("cp-rate").textContent = c.rate;
    $("cp-eta").textContent = c.complete ? "" : "about " + left(c.eta_seconds) + " to go";
    $("cp-verdict").textContent = c.verdict;
    $("cp-verdict").classList.toggle("ok", c.complete);
  }

  async function showDetail(id) {
    let d;
    try { d = await getJSON("api/devices/" + encodeURIComponent(id)); } catch (e) { return; }
    $("d-id").textContent = d.device;
    $("d-meta").textContent = (d.online ? "online" : "offline") + " · agent " + (d.agent || "–") +
      " · status changed " + when(d.at) + " · received " + (d.seen || "").replace("T", " ").replace(/\.\d+/, "");
    const tb = $("d-tokens");
    tb.replaceChildren();
    for (const t of d.tokens) {
      const tr = el("tr");
      for (const v of [t.name, t.service || "–", t.channel || "–", t.kid, left(t.expires_in)]) tr.append(el("td", "", v));
      tb.append(tr);
    }
    const rf = $("d-refused");
    rf.replaceChildren();
    for (const f of d.refused || []) rf.append(el("p", "ref", "refused " + (f.name || "all") + ": " + f.code + (f.message ? " — " + f.message : "")));
    $("detail").showModal();
  }

  function setLive(on, text) {
    const p = $("live");
    p.className = "pill " + (on ? "on" : "off");
    p.textContent = text;
  }

  function connect() {
    const es = new EventSource("api/events");
    es.addEventListener("open", () => setLive(true, "live"));
    es.addEventListener("error", () => setLive(false, "reconnecting"));
    es.addEventListener("summary", (e) => drawSummary(JSON.parse(e.data)));
    es.addEventListener("devices", () => loadDevices());
  }

  function init() {
    for (const id of ["f-offline", "f-expiring", "f-refused", "f-kid"]) $(id).addEventListener("change", filter);
    $("q").addEventListener("input", filter);
    $("thead").addEventListener("click", (e) => {
      const k = e.target.dataset && e.target.dataset.sort;
      if (!k) return;
      if (k === sortKey) sortDir = -sortDir; else { sortKey = k; sortDir = 1; }
      filter();
    });
    let raf = 0;
    $("scroller").addEventListener("scroll", () => {
      if (!raf) raf = requestAnimationFrame(() => { raf = 0; drawRows(false); });
    }, { passive: true });
    window.addEventListener("resize", () => drawRows(true));
    $("spacer").addEventListener("click", (e) => {
      const r = e.target.closest(".r");
      if (r) showDetail(r.dataset.device);
    });
    getJSON("api/summary").then(drawSummary).catch(() => setLive(false, "error"));
    loadDevices();
    connect();
  }
  init();
})();
