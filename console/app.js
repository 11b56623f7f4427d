// The Switchyard operator console: one page per hash route, each drawn from
// the admin API (/admin/v1/...). No build step: plain DOM and uPlot.
"use strict";

const KEY = "switchyard.adminKey";
const page = document.getElementById("page");
// What the charts plotted, for the browser tests and for anyone debugging.
window.consoleState = { charts: {} };

// h("td", {class: "num"}, "1.0") — every string becomes a text node, so
// nothing from the log is ever parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function showError(msg) {
  const e = document.getElementById("error");
  e.textContent = msg;
  e.hidden = !msg;
}

async function api(path, opts = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = Object.assign({}, opts.headers || {});
  if (key) headers.Authorization = "Bearer " + key;
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const msg = (body.error && body.error.message) || res.statusText;
    const err = new Error(res.status + ": " + msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

const fmt = {
  usd: (v) => (v ? "$" + v.toFixed(v >= 1 ? 2 : 6) : "$0"),
  num: (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US")),
  pct: (v) => (100 * (v || 0)).toFixed(1) + "%",
  r: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(3)),
  ms: (v) => (v === null || v === undefined ? "–" : v + " ms"),
  tenant: (t) => t || "(default)",
  time: (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19),
  day: (ms) => new Date(ms).toISOString().slice(0, 10),
};

function table(id, columns, rows) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c[0])))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => {
      const v = c[1](r);
      return h("td", { class: c[2] ? "num" : null }, v);
    })))));
}

function card(stat, label, value) {
  return h("div", { class: "card", "data-stat": stat },
    h("div", { class: "v" }, value), h("div", { class: "k" }, label));
}

const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

function rangeParams(sel) {
  const to = Date.now();
  return sel === "all" ? { from: 0, to } : { from: to - RANGES[sel], to };
}

function rangePicker(current, onChange) {
  const s = h("select", { id: "range", onchange: (e) => onChange(e.target.value) },
    [...Object.keys(RANGES), "all"].map((k) => h("option", { value: k }, k)));
  s.value = current;
  return h("label", {}, "Time range ", s);
}

const PALETTE = ["#4263eb", "#f08c00", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#e8590c", "#5c940d"];

// One line per model over the buckets; nulls are gaps.
function lineChart(name, title, t, cols) {
  const models = Object.keys(cols);
  const data = [t.map((x) => x / 1000), ...models.map((m) => cols[m])];
  window.consoleState.charts[name] = { models, t, columns: cols };
  const el = h("div", { class: "chart", id: "chart-" + name });
  const opts = {
    title, width: 560, height: 260,
    series: [{}, ...models.map((m, i) => ({ label: m, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false }))],
    axes: [{}, {}],
  };
  // uPlot measures its container, so draw once the element is in the page.
  requestAnimationFrame(() => new uPlot(opts, data, el));
  return el;
}

// Each model's share of a bucket's requests (null where there were none).
function shares(counts) {
  const models = Object.keys(counts);
  const n = models.length ? counts[models[0]].length : 0;
  const totals = Array.from({ length: n }, (_, i) => models.reduce((s, m) => s + counts[m][i], 0));
  return Object.fromEntries(models.map((m) => [m, counts[m].map((c, i) => (totals[i] ? c / totals[i] : null))]));
}

async function overview(params) {
  const sel = params.get("range") || "24h";
  const r = rangeParams(sel);
  const o = await api(`/admin/v1/overview?from=${r.from}&to=${r.to}`);
  window.consoleState.overview = o;
  const t = o.totals;
  const lat = t.latency_ms || {};
  const nav = (v) => (location.hash = "#/overview?range=" + v);
  page.replaceChildren(
    h("h2", {}, "Overview"),
    rangePicker(sel, nav),
    h("div", { class: "cards" },
      card("requests", "requests", fmt.num(t.requests)),
      card("failed", "failed requests", fmt.num(t.failed)),
      card("attempt_errors", "provider errors", fmt.num(t.attempt_errors)),
      card("spend", "spend", fmt.usd(t.spend_usd)),
      card("cache_hits", "cache hits", fmt.num(t.cache_hits)),
      card("cache_saved", "saved by the cache", fmt.usd(t.cache_saved_usd)),
      card("feedback", "feedback", fmt.num(t.feedback)),
      card("mean_reward", "mean reward", fmt.r(t.mean_reward)),
      card("p50", "latency p50", fmt.ms(lat.p50)),
      card("p99", "latency p99", fmt.ms(lat.p99))),
    h("div", { class: "charts" },
      lineChart("routing", "Requests per model", o.series.t_ms, o.series.requests),
      lineChart("share", "Routing share per model", o.series.t_ms, shares(o.series.requests)),
      lineChart("reward", "Mean reward per model (learning curve)", o.series.t_ms, o.series.mean_reward)),
    h("h3", {}, "Per model"),
    table("models", [
      ["model", (m) => m.model],
      ["requests", (m) => fmt.num(m.requests), 1],
      ["share", (m) => fmt.pct(m.share), 1],
      ["failed", (m) => fmt.num(m.failed), 1],
      ["cache hits", (m) => fmt.num(m.cached), 1],
      ["attempts", (m) => fmt.num(m.attempts), 1],
      ["errors", (m) => fmt.num(m.attempt_errors), 1],
      ["spend", (m) => fmt.usd(m.spend_usd), 1],
      ["feedback", (m) => fmt.num(m.feedback), 1],
      ["mean reward", (m) => fmt.r(m.mean_reward), 1],
      ["p50", (m) => fmt.ms(m.latency_ms && m.latency_ms.p50), 1],
      ["p99", (m) => fmt.ms(m.latency_ms && m.latency_ms.p99), 1],
    ], o.models),
    h("h3", {}, "Spend"),
    h("div", { class: "charts" },
      table("spend-tenant", [["tenant", (x) => fmt.tenant(x[0])], ["spend", (x) => fmt.usd(x[1]), 1]], Object.entries(o.spend.by_tenant)),
      table("spend-key", [["key", (x) => x[0] || "(none)"], ["spend", (x) => fmt.usd(x[1]), 1]], Object.entries(o.spend.by_key)),
      table("spend-day", [["day (UTC)", (x) => fmt.day(x.day_ms)], ["spend", (x) => fmt.usd(x.usd), 1]], o.spend.by_day)));
}

async function decisions(params) {
  const q = new URLSearchParams();
  for (const k of ["tenant", "model", "rule", "policy", "feedback", "before"]) {
    if (params.get(k)) q.set(k, params.get(k));
  }
  const within = params.get("range") || "";
  if (within) q.set("from", rangeParams(within).from);
  const res = await api("/admin/v1/decisions?" + q.toString());
  const field = (name, label) => h("label", {}, label, h("input", { name, value: params.get(name) || "" }));
  const fb = h("select", { name: "feedback" },
    h("option", { value: "" }, "any"), h("option", { value: "yes" }, "yes"), h("option", { value: "no" }, "no"));
  fb.value = params.get("feedback") || "";
  const rs = h("select", { name: "range" }, h("option", { value: "" }, "any time"),
    Object.keys(RANGES).map((k) => h("option", { value: k }, "last " + k)));
  rs.value = within;
  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => {
    e.preventDefault();
    const f = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) f.set(k, v);
    location.hash = "#/decisions?" + f.toString();
  } },
  h("label", {}, "time", rs), field("tenant", "tenant"), field("model", "model"), field("rule", "rule"), field("policy", "policy version"),
  h("label", {}, "has feedback", fb), h("button", { type: "submit" }, "Search"));
  const next = new URLSearchParams(params);
  if (res.next_before) next.set("before", res.next_before);
  page.replaceChildren(
    h("h2", {}, "Decisions"), form,
    table("decisions", [
      ["time (UTC)", (d) => fmt.time(d.created_at_ms)],
      ["id", (d) => h("a", { href: "#/decision/" + d.id }, d.id)],
      ["tenant", (d) => fmt.tenant(d.tenant)],
      ["rpc", (d) => d.rpc],
      ["model", (d) => d.model],
      ["served", (d) => d.served_model || "–"],
      ["policy", (d) => d.policy_version],
      ["rules", (d) => (d.rules || []).join(", ")],
      ["p", (d) => d.propensity.toFixed(3), 1],
      ["cost", (d) => (d.cost_usd === null ? "–" : fmt.usd(d.cost_usd)), 1],
      ["latency", (d) => fmt.ms(d.latency_ms), 1],
      ["reward", (d) => fmt.r(d.reward), 1],
    ], res.data),
    res.next_before ? h("a", { id: "more", href: "#/decisions?" + next.toString() }, "Older →") : "");
}

function kv(id, pairs) {
  return table(id, [["field", (p) => p[0]], ["value", (p) => p[1]]], pairs.filter((p) => p[1] !== null && p[1] !== undefined));
}

async function decision(id) {
  const d = await api("/admin/v1/decisions/" + encodeURIComponent(id));
  const cands = d.candidates || [];
  // The explanation first (what the policy believed and what it drew), then
  // whatever else the engine logged.
  const FIRST = ["eligible", "reason", "expected_quality", "quality_std", "expected_cost_usd", "score", "probability"];
  const rest = [...new Set(cands.flatMap((c) => Object.keys(c)))].filter((k) => k !== "model" && !FIRST.includes(k));
  const keys = [...FIRST.filter((k) => cands.some((c) => k in c)), ...rest.sort()];
  const show = (v) => (typeof v === "number" ? Number(v.toPrecision(4)) : typeof v === "object" ? JSON.stringify(v) : v);
  page.replaceChildren(
    h("h2", {}, "Decision ", h("code", {}, d.id)),
    kv("summary", [
      ["time (UTC)", fmt.time(d.created_at_ms)], ["tenant", fmt.tenant(d.tenant)], ["key", d.key_id], ["rpc", d.rpc],
      ["chosen model", d.model], ["served by", d.served_model], ["provider", d.provider],
      ["policy version", d.policy_version], ["rules that applied", (d.rules || []).join(", ") || null],
      ["profile", d.profile], ["A/B", d.ab_rule ? `${d.ab_rule}: ${d.ab_arm} (p=${d.ab_probability})` : null],
      ["intent", d.intent], ["propensity", d.propensity.toFixed(4)], ["explored", String(d.explored)], ["pinned", String(d.pinned)],
      ["cost weight", d.cost_weight], ["prompt tokens", d.prompt_tokens], ["expected output tokens", d.output_tokens],
      ["feedback (mean)", d.reward], ["answered from the cache, first given by", d.cached_from],
    ]),
    h("h3", {}, "Candidates"),
    table("candidates", [["model", (c) => c.model], ...keys.map((k) => [k, (c) => show(c[k]), 1])], cands),
    h("h3", {}, "Attempts"),
    table("attempts", [
      ["#", (a) => a.seq, 1], ["model", (a) => a.model], ["provider", (a) => a.provider],
      ["outcome", (a) => h("span", { class: a.outcome === "ok" ? null : "bad" }, a.outcome)],
      ["error", (a) => a.error || ""], ["HTTP", (a) => a.http_status ?? "", 1],
      ["latency", (a) => fmt.ms(a.latency_ms), 1], ["tokens in/out", (a) => `${a.prompt_tokens ?? "?"}/${a.completion_tokens ?? "?"}`, 1],
      ["cost", (a) => (a.cost_usd === null ? "–" : fmt.usd(a.cost_usd)), 1],
    ], d.attempts),
    h("h3", {}, "Feedback"),
    table("feedback", [["source", (f) => f.source], ["reward", (f) => fmt.r(f.reward), 1], ["at (UTC)", (f) => fmt.time(f.updated_at_ms)]], d.feedback),
    d.prompt ? h("div", {}, h("h3", {}, "Prompt"), h("pre", { id: "prompt" }, d.prompt)) : "");
}

async function policies() {
  const res = await api("/admin/v1/policies");
  const promote = async (p) => {
    if (!confirm(`Make ${p.version} the current policy?`)) return;
    try {
      await api(`/admin/v1/policies/${p.id}/promote`, { method: "POST" });
      showError("");
      await route();
    } catch (e) {
      showError("promotion refused: " + e.message);
    }
  };
  const iv = (p) => (p.interval && p.interval.value !== null && p.interval.value !== undefined
    ? `${fmt.r(p.interval.value)} [${fmt.r(p.interval.lower)}, ${fmt.r(p.interval.upper)}]` : "–");
  page.replaceChildren(
    h("h2", {}, "Policies"),
    res.latest_decision_policy ? h("p", { id: "serving" }, "The newest decision was made by ", h("code", {}, res.latest_decision_policy), ".") : "",
    res.data.length ? "" : h("p", {}, "No policy has been promoted: the service runs the policy its configuration names."),
    table("policies", [
      ["promotion", (p) => p.id, 1],
      ["version", (p) => [p.version, p.current ? h("span", { class: "badge" }, " current ") : ""]],
      ["promoted (UTC)", (p) => fmt.time(p.promoted_at_ms)],
      ["estimate [interval]", iv, 1],
      ["previous policy's estimate", (p) => fmt.r(p.baseline), 1],
      ["decisions", (p) => fmt.num(p.decisions), 1],
      ["forced", (p) => (p.forced ? "yes" : "no")],
      ["", (p) => (p.current ? "" : h("button", { class: "promote", "data-id": p.id, onclick: () => promote(p) }, "Promote"))],
    ], res.data));
}

async function providers() {
  const s = await api("/admin/v1/providers");
  const breaker = (b) => h("span", { class: b === "closed" ? null : "bad" }, b);
  page.replaceChildren(
    h("h2", {}, "Providers"),
    h("h3", {}, "Models"),
    table("provider-models", [
      ["model", (m) => m.model], ["provider", (m) => m.provider], ["breaker", (m) => breaker(m.breaker)],
      ["times opened", (m) => m.breaker_opened, 1], ["in flight", (m) => m.in_flight, 1],
      ["attempts", (m) => m.attempts, 1], ["failures", (m) => m.failures, 1],
      ["latency EWMA", (m) => m.latency_ewma_ms.toFixed(1) + " ms", 1], ["429s (10 s)", (m) => m.recent_429s, 1],
    ], s.models),
    h("h3", {}, "Providers"),
    table("provider-load", [
      ["provider", (p) => p.provider], ["in flight", (p) => p.in_flight, 1], ["attempts", (p) => p.attempts, 1],
      ["failures", (p) => p.failures, 1], ["retries", (p) => p.retries, 1],
      ["latency EWMA", (p) => p.latency_ewma_ms.toFixed(1) + " ms", 1], ["429s (10 s)", (p) => p.recent_429s, 1],
    ], s.providers),
    h("h3", {}, "Retry budget"), h("pre", {}, JSON.stringify(s.retry_budget, null, 2)));
}

async function keys() {
  const [k, spend] = await Promise.all([api("/admin/v1/keys"), api("/admin/v1/spend")]);
  const month = {};
  const today = {};
  const day = new Date().toISOString().slice(0, 10);
  for (const r of spend.data) {
    if (r.shadow || !r.key_id) continue;
    month[r.key_id] = (month[r.key_id] || 0) + r.usd;
    if (r.day === day) today[r.key_id] = (today[r.key_id] || 0) + r.usd;
  }
  const revoke = async (key) => {
    if (!confirm(`Revoke ${key.id}?`)) return;
    try { await api("/admin/v1/keys/" + encodeURIComponent(key.id), { method: "DELETE" }); await route(); } catch (e) { showError(e.message); }
  };
  page.replaceChildren(
    h("h2", {}, "Keys and budgets"),
    table("keys", [
      ["key", (x) => x.id], ["tenant", (x) => fmt.tenant(x.tenant)], ["name", (x) => x.name], ["tier", (x) => x.tier],
      ["rpm", (x) => x.rpm ?? "–", 1], ["tpm", (x) => x.tpm ?? "–", 1],
      ["spend this month", (x) => fmt.usd(month[x.id] || 0), 1],
      ["monthly budget", (x) => (x.budget_month_usd === null ? "–" : fmt.usd(x.budget_month_usd)), 1],
      ["spend today (UTC)", (x) => fmt.usd(today[x.id] || 0), 1],
      ["daily budget", (x) => (x.budget_day_usd === null ? "–" : fmt.usd(x.budget_day_usd)), 1],
      ["state", (x) => (x.revoked_at_ms ? "revoked" : "active")],
      ["", (x) => (x.revoked_at_ms ? "" : h("button", { class: "revoke", "data-id": x.id, onclick: () => revoke(x) }, "Revoke"))],
    ], k.data));
}

async function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/overview").split("/").filter(Boolean);
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  document.body.dataset.ready = "";
  try {
    if (name === "decision") await decision(decodeURIComponent(parts.slice(1).join("/")));
    else if (name === "decisions") await decisions(params);
    else if (name === "policies") await policies();
    else if (name === "providers") await providers();
    else if (name === "keys") await keys();
    else await overview(params);
    showError("");
  } catch (e) {
    page.replaceChildren(h("h2", {}, "Cannot show this page"), h("p", { class: "bad", id: "page-error" }, e.message));
  }
  // Charts draw on the next frame; "ready" means the page is fully drawn.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    document.body.dataset.ready = name;
    window.consoleState.routed = location.hash;
    if (window.consoleState.firstRenderMs === undefined) window.consoleState.firstRenderMs = performance.now();
  }));
}

document.getElementById("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const v = document.getElementById("admin-key").value.trim();
  if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY);
  route();
});
window.addEventListener("hashchange", route);
route();
