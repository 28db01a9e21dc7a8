// The operator dashboard: a vanilla ES module over the control plane's REST API, no build step.
//
// Every node is made with DOM calls and every value set as text, never HTML built from strings:
// the page shows data written by functions (event payloads, errors, keys), which must never
// become markup, and the CSP forbids inline scripts and styles anyway.

const SVG_NS = "http://www.w3.org/2000/svg";
const PAGE = 50; // rows per page of every list
const POLL_MS = 2000; // live-metrics refresh
const SPARK_POINTS = 30; // a minute of req/s at one sample per poll

const session = { csrf: "", auth: null }; // auth: "cookie", "none", "bearer" or null (logged out)
let generation = 0; // bumped per navigation, so a slow view never renders over a newer one
let cleanups = []; // what the view on screen must stop when it is left (timers)
let flash = ""; // a notice for the next render (it survives the navigation an action causes)
let routed = null; // the hash last rendered, so its own hashchange does not render it twice

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// `onclick`-style keys become listeners, `true` an empty attribute, null/false nothing.
function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Replaces a view's content; takes children as `h` does (nested arrays, null and false skipped).
function mount(el, ...children) {
  el.replaceChildren();
  build(el, null, children);
}

const $ = (selector) => document.querySelector(selector);
const enc = encodeURIComponent;
const td = (...children) => h("td", {}, ...children);

function table(headers, body) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), body);
}

function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

function dl(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

// Each link is [text, href], or the text alone for the page shown.
function crumbs(...links) {
  const items = links.map((l) => (Array.isArray(l) ? h("a", { href: l[1] }, l[0]) : h("span", {}, l)));
  return h("nav", { class: "crumbs" }, items.flatMap((item, i) => (i ? [" / ", item] : [item])));
}

function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

// ---------------------------------------------------------------- formatting

function fmtDur(ms) {
  if (ms == null || !Number.isFinite(ms)) return "—";
  const a = Math.abs(ms);
  if (a === 0) return "0";
  if (a < 1) return `${+ms.toFixed(2)} ms`;
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${+(ms / 1000).toFixed(1)} s`;
  if (a < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  if (a < 86_400_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  return `${+(ms / 86_400_000).toFixed(1)} d`;
}

function fmtBytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${+n.toFixed(1)} ${units[i]}`;
}

// Local time in ISO order (2024-05-01 14:03:07.123), the original UTC text as tooltip.
function fmtTime(value) {
  const d = new Date(value);
  if (value == null || Number.isNaN(d.getTime())) return value ?? "—";
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function time(value) {
  if (value == null) return "—";
  const iso = typeof value === "number" ? new Date(value).toISOString() : value;
  return h("time", { datetime: iso, title: iso }, fmtTime(iso));
}

const fmtRate = (r) => (r == null ? "—" : r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));
const short = (id, n = 8) => h("code", { title: id }, id.length > n + 1 ? `${id.slice(0, n)}…` : id);
const list = (items) => (items?.length ? items.join(", ") : "—");

const BADGES = {
  ok: ["ok", "succeeded", "completed", "committed", "commit", "voted commit", "alive", "connected", "caught up", "delivered", "active", "handled", "yes"],
  warn: ["running", "compensating", "queued", "preparing", "committing", "aborting", "pending", "behind", "leaving", "sending", "awaiting vote", "skipped"],
  err: ["failed", "dead", "stuck", "aborted", "voted abort", "disconnected", "down", "blocked"],
};

function badge(text, kind) {
  kind ??= Object.keys(BADGES).find((k) => BADGES[k].includes(String(text))) ?? "muted";
  return h("span", { class: `badge ${kind}` }, text ?? "—");
}

// Payloads are text that is often JSON: pretty-print it when it is.
function prettyText(text) {
  if (text == null) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

// An event's data is JSON, or `{"bytes": [...]}` when it was not JSON: then show the bytes as text.
function eventData(data) {
  const keys = data && typeof data === "object" && !Array.isArray(data) ? Object.keys(data) : [];
  if (keys.length === 1 && Array.isArray(data.bytes) && data.bytes.every(Number.isInteger)) {
    return new TextDecoder().decode(new Uint8Array(data.bytes));
  }
  return JSON.stringify(data, null, 2);
}

function limitsText(limits) {
  if (!limits) return "—";
  const title = Object.entries(limits).map(([k, v]) => `${k}: ${v}`).join("\n");
  return h("span", { title }, `${fmtBytes(limits.memory_bytes)} · ${fmtDur(limits.timeout_ms)} · ×${limits.max_concurrency}`);
}

// ---------------------------------------------------------------- API client

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Thrown after a 401 sent the user to the login view: nothing to show.
class Redirected extends Error {}

function params(query) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v != null && v !== "") p.set(k, v);
  return p.toString();
}

// Same origin only; the session cookie goes by itself, the CSRF token on every call.
async function api(path, { method = "GET", body, query, text = false, noRedirect = false } = {}) {
  const headers = { "X-CSRF-Token": session.csrf };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const qs = params(query);
  const response = await fetch(qs ? `${path}?${qs}` : path, { method, headers, body: payload, credentials: "same-origin" });
  if (response.status === 401 && !noRedirect) {
    session.csrf = "";
    session.auth = null;
    showAuth();
    go("#/login");
    throw new Redirected();
  }
  if (!response.ok) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch {
      // Not our error shape (a proxy's page?): the status says enough.
    }
    throw new ApiError(response.status, error?.code ?? `http_${response.status}`, error?.message ?? response.statusText);
  }
  if (response.status === 204) return null;
  return text ? response.text() : response.json();
}

// For secondary data: its absence (404, or any failure) must not fail the page.
function optional(promise) {
  return promise.catch((e) => {
    if (e instanceof Redirected) throw e;
    return null;
  });
}

// Runs `fn` over `items`, `n` at a time; one failure does not stop the others.
async function pool(items, n, fn) {
  const queue = [...items];
  const worker = async () => {
    while (queue.length) {
      try {
        await fn(queue.shift());
      } catch (e) {
        if (e instanceof Redirected) throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, queue.length) }, worker));
}

async function allFunctionNames() {
  const names = [];
  let after;
  do {
    const page = await api("/v1/functions", { query: { limit: 1000, after } });
    names.push(...page.functions.map((f) => f.name));
    after = page.next;
  } while (after != null);
  return names;
}

// ---------------------------------------------------------------- banners, actions, paging

function showError(error) {
  if (error instanceof Redirected) return;
  const box = $("#error");
  box.replaceChildren(h("strong", {}, error.code ?? "error"), ": ", error.message || String(error));
  box.hidden = false;
}

// A button's click handler that disables it while `fn` runs and shows what went wrong. The
// page counts as loading meanwhile; when `fn` navigates, the new render says when it is done.
function action(fn) {
  return async (event) => {
    const button = event.currentTarget;
    const gen = generation;
    button.disabled = true;
    $("#error").hidden = true;
    document.body.dataset.loaded = "false";
    try {
      await fn(event);
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
      if (gen === generation) document.body.dataset.loaded = "true";
    }
  };
}

// Loads the first page now; the returned "More" button loads the next ones (hidden on the last).
// `load(cursor)` renders one page and returns the next cursor (null at the end).
async function pager(load) {
  const button = h("button", { type: "button", class: "more" }, "More");
  let next = await load(undefined);
  button.hidden = next == null;
  button.addEventListener("click", action(async () => {
    next = await load(next);
    button.hidden = next == null;
  }));
  return button;
}

// Filters kept in the hash's query, so a reload or a re-render keeps them.
function filters(base, query, fields) {
  const inputs = fields.map((f) =>
    f.options
      ? h("select", { id: f.id }, h("option", { value: "" }, "all"),
          f.options.map((o) => h("option", { value: o, selected: query.get(f.id) === o }, o)))
      : h("input", { id: f.id, type: "search", value: query.get(f.id) ?? "", placeholder: f.hint ?? "" }));
  const apply = () => {
    const qs = params(Object.fromEntries(inputs.map((i) => [i.id, i.value.trim()])));
    go(`#/${base}${qs ? `?${qs}` : ""}`);
  };
  inputs.filter((i) => i.tagName === "SELECT").forEach((i) => i.addEventListener("change", apply));
  const submit = (e) => {
    e.preventDefault();
    apply();
  };
  return h("form", { class: "filters", onsubmit: submit },
    fields.map((f, i) => h("label", {}, f.label, inputs[i])), h("button", { type: "submit" }, "Apply"));
}

// ---------------------------------------------------------------- router

const VIEWS = {
  login: [[viewLogin, "login"]],
  functions: [[viewFunctions, "functions"], [viewFunction, "function"]],
  metrics: [[viewMetrics, "metrics"]],
  streams: [[viewNamespaces, "streams"], [viewStreams, "streams"], [viewEvents, "streams"]],
  subscriptions: [[viewSubscriptions, "subscriptions"]],
  sagas: [[viewSagas, "sagas"], [viewSaga, "saga"]],
  transactions: [[viewTransactions, "transactions"], [viewTransaction, "transactions"]],
  kafka: [[viewKafka, "kafka"]],
  nodes: [[viewNodes, "nodes"]],
  invocations: [[viewInvocations, "invocations"]],
};

function parseHash() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search) };
}

// Navigates now (hashchange comes later, and never for the hash already shown).
function go(hash) {
  if (location.hash !== hash) location.hash = hash;
  route();
}

const rerender = () => route();

async function route() {
  const gen = ++generation;
  routed = location.hash;
  cleanups.forEach((stop) => stop());
  cleanups = [];
  document.body.dataset.loaded = "false";
  $("#error").hidden = true;
  $("#error").replaceChildren();
  $("#notice").textContent = flash;
  $("#notice").hidden = !flash;
  flash = "";
  const { parts, query } = parseHash();
  if (!parts.length) {
    history.replaceState(null, "", "#/functions");
    return route();
  }
  const [area, ...args] = parts;
  const [view, name] = VIEWS[area]?.[args.length] ?? [viewNotFound, "not-found"];
  document.querySelectorAll("#nav a[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === area));
  const root = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  $("#view").replaceChildren(root);
  const ctx = { root, query, onLeave: (stop) => cleanups.push(stop) };
  try {
    await view(ctx, ...args);
  } catch (e) {
    if (e instanceof Redirected || gen !== generation) return;
    showError(e);
    root.querySelector(":scope > p.muted")?.remove();
  }
  if (gen !== generation) return;
  document.body.dataset.view = name;
  document.body.dataset.loaded = "true";
}

async function viewNotFound({ root }) {
  mount(root, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/functions" }, "Back to the functions")));
}

// ---------------------------------------------------------------- session

function showAuth() {
  document.body.dataset.auth = session.auth ?? "out";
  $("#logout").hidden = session.auth !== "cookie";
}

async function viewLogin({ root }) {
  if (session.auth === "none") {
    go("#/functions");
    throw new Redirected();
  }
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const submit = async (e) => {
    e.preventDefault();
    try {
      const r = await api("/ui/login", { method: "POST", body: { token: token.value }, noRedirect: true });
      session.csrf = r.csrf ?? "";
      session.auth = r.auth ?? "cookie";
      showAuth();
      go("#/functions");
    } catch (err) {
      showError(err.status === 401 ? new ApiError(401, err.code, "wrong token") : err);
    }
  };
  mount(root, h("form", { class: "login", onsubmit: submit },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "Admin token"), token,
    h("button", { id: "login", type: "submit" }, "Sign in")));
  token.focus();
}

async function logout() {
  await api("/ui/logout", { method: "POST" });
  session.csrf = "";
  session.auth = null;
  showAuth();
  go("#/login");
}

// ---------------------------------------------------------------- functions

function activeVersion(f) {
  return f.versions?.find((v) => v.version === f.active_version) ?? null;
}

// Which kinds of trigger a spec has, as badges with the details as tooltips.
function triggerBadges(spec) {
  const t = spec?.triggers ?? {};
  const tip = (kind, title) => h("span", { class: "badge trigger", title }, kind);
  return [
    t.http?.length && tip("http", t.http.join("\n")),
    t.kafka && tip("kafka", t.kafka.topics.join("\n")),
    t.subscriptions?.length && tip("events", t.subscriptions.map((x) => x.stream).join("\n")),
    t.schedules?.length && tip("schedule", t.schedules.map((x) => x.cron).join("\n")),
  ].filter(Boolean);
}

async function viewFunctions({ root }) {
  const body = h("tbody");
  const more = await pager(async (after) => {
    const page = await api("/v1/functions", { query: { limit: PAGE, after } });
    const rows = page.functions.map((f) => {
      const triggers = td(f.routes?.length ? h("span", { class: "badge trigger" }, "http") : "…");
      body.append(h("tr", { "data-function": f.name },
        td(h("a", { href: `#/functions/${enc(f.name)}` }, f.name)),
        td(f.active_version ?? "—"), td(list(f.routes)), triggers, td(limitsText(f.limits)), td(time(f.updated_at))));
      return { name: f.name, triggers };
    });
    // The list gives routes only; the other triggers are in each function's active spec.
    await pool(rows, 4, async ({ name, triggers }) => {
      const badges = triggerBadges(activeVersion(await api(`/v1/functions/${enc(name)}`))?.spec);
      triggers.replaceChildren(...(badges.length ? badges : ["—"]));
    });
    if (!body.rows.length) body.append(emptyRow(6, "No functions deployed."));
    return page.next;
  });
  mount(root, h("h1", {}, "Functions"),
    table(["Name", "Active", "Routes", "Triggers", "Limits", "Updated"], body), more);
}

async function viewFunction({ root, onLeave }, name) {
  const path = `/v1/functions/${enc(name)}`;
  const f = await api(path);
  const active = activeVersion(f);
  const triggers = active?.spec?.triggers ?? {};
  const [config, subs, schedule, logs] = await Promise.all([
    optional(api(`${path}/config`)),
    triggers.subscriptions?.length ? optional(api(`${path}/subscriptions`, { query: { limit: 1000 } })) : null,
    triggers.schedules?.length ? optional(api(`${path}/schedule`)) : null,
    optional(api(`${path}/logs`, { query: { limit: 100 } })),
  ]);
  mount(root, 
    crumbs(["Functions", "#/functions"], name),
    h("h1", {}, name),
    dl([
      ["Active version", h("span", { "data-active-version": f.active_version ?? "" }, f.active_version ?? "—")],
      ["Latest version", f.latest_version],
      ["Compiler (this node)", f.compiler],
      ["Config version", f.config_version],
      ["Created", time(f.created_at)],
      ["Updated", time(f.updated_at)],
    ]),
    section("Triggers", specSummary(active?.spec)),
    subs && section("Subscriptions", subscriptionsSummary(subs)),
    schedule && section("Schedules", scheduleTable(schedule)),
    config && section("Configuration", dl([
      ["Variables", list(Object.keys(config.variables ?? {}).sort())],
      ["Secrets", list([...(config.secrets ?? [])].sort())],
    ])),
    section("Versions", versionsTable(f)),
    logs && section("Logs", logsTable(path, logs, onLeave)),
    section("Deploy a new version", deployForm(name, active)),
    section("Delete", deleteForm(name)));
}

// This node's last records of the function (guest output, invocations, host warnings), newest
// last; "Follow" streams new ones (server-sent events; the session cookie goes with them).
function logsTable(path, report, onLeave) {
  const body = h("tbody", {}, report.logs.map(logRow));
  if (!report.logs.length) body.append(emptyRow(5, "Nothing logged yet."));
  let source = null;
  const stop = () => {
    source?.close();
    source = null;
    button.textContent = "Follow";
  };
  const button = h("button", { type: "button", id: "follow-logs", onclick: () => {
    if (source) return stop();
    // Records are numbered per node: one seen already (the stream starts with the newest) is
    // known by both.
    const seen = new Set(report.logs.map((r) => `${r.node}/${r.seq}`));
    source = new EventSource(`${path}/logs?follow=true&limit=1`);
    source.addEventListener("log", (e) => {
      const record = JSON.parse(e.data);
      const key = `${record.node}/${record.seq}`;
      if (seen.has(key)) return;
      seen.add(key);
      body.querySelector("tr.empty")?.remove();
      body.append(logRow(record));
    });
    button.textContent = "Stop following";
  } }, "Follow");
  onLeave(stop);
  const missing = (report.nodes ?? []).filter((n) => !n.ok).map((n) => `${n.node} (${n.error})`);
  const note = missing.length ? `Not reached: ${missing.join(", ")}. ` : "";
  return [h("p", { class: "muted" }, `Records of every node, newest last. ${note}`, button),
    table(["Time", "Version", "Kind", "Request", "Text"], body)];
}

function logRow(r) {
  const text = r.kind === "invocation" ? `${r.trigger ?? "invoked"} ${r.status} in ${fmtDur(r.duration_ms)}` : r.line;
  const kind = r.kind === "stderr" || r.level === "error" ? "err" : r.kind === "host" ? "warn" : "muted";
  return h("tr", { "data-log": r.seq, title: r.node ? `node ${r.node}` : "" }, td(time(r.at_ms)), td(r.version ?? "—"), td(badge(r.kind, kind)),
    td(r.request_id ? short(r.request_id, 12) : "—"), td(h("code", { class: "log-line" }, text ?? "")));
}

function specSummary(spec) {
  const t = spec?.triggers ?? {};
  const pairs = [
    t.http?.length && ["HTTP routes", list(t.http)],
    ...(t.subscriptions ?? []).map((x) => ["Events", `${x.stream} (from ${x.from}, batch ${x.batch_size}, ${x.max_attempts} attempts)`]),
    t.kafka && ["Kafka", `${t.kafka.topics.join(", ")} · group ${t.kafka.group ?? "default"} · DLQ ${t.kafka.dlq ?? "<topic>.dlq"} · ${t.kafka.max_retries} retries`],
    ...(t.schedules ?? []).map((x) => ["Schedule", `${x.cron} (${x.tz ?? "UTC"})${x.route ? ` → GET ${x.route}` : ""}`]),
    ...(spec?.outbox ?? []).map((o) => ["Outbox", `${o.stream} → ${o.topic}`]),
    spec?.grants?.read_namespaces?.length && ["Reads namespaces", list(spec.grants.read_namespaces)],
    spec?.outbound?.allow?.length && ["Outbound allowed", list(spec.outbound.allow)],
    spec && ["Limits", limitsText(spec.limits)],
  ];
  return pairs.some(Boolean) ? dl(pairs) : h("p", { class: "empty" }, "No active version.");
}

function subscriptionsSummary(r) {
  const parked = r.parked.filter((p) => p.replayed_at_ms == null).length;
  return [
    table(["Stream", "Checkpoint", "Head", "Lag", "Status"], h("tbody", {}, r.subscriptions.map((x) =>
      h("tr", {}, td(x.stream), td(x.checkpoint ?? "—"), td(x.head), td(lagText(x.lag)), td(badge(subStatus(x))))))),
    h("p", {}, `${parked}${r.next != null ? "+" : ""} parked event(s). `, h("a", { href: "#/subscriptions" }, "Manage subscriptions")),
  ];
}

function scheduleTable(report) {
  return table(["Schedule", "Cron", "Next tick", "Last run", "Duration", "Error"], h("tbody", {}, report.schedules.map((x) => {
    const last = x.runs?.[0];
    return h("tr", {}, td(x.schedule), td(h("code", {}, x.cron), ` ${x.tz ?? ""}`), td(time(x.next?.[0])),
      td(last ? [badge(last.status), " ", time(last.planned_at)] : "—"), td(fmtDur(last?.duration_ms)), td(last?.error ?? ""));
  })));
}

function versionsTable(f) {
  const rows = [...f.versions].reverse().map((v) => {
    const isActive = v.version === f.active_version;
    const activate = action(async () => {
      await api(`/v1/functions/${enc(f.name)}/versions/${v.version}/activate`, { method: "POST" });
      flash = `Version ${v.version} is active.`;
      rerender();
    });
    return h("tr", { "data-version": v.version, class: isActive ? "current" : null },
      td(v.version), td(time(v.created_at)), td(fmtBytes(v.size_bytes)), td(short(v.sha256, 12)),
      td(list(v.spec?.triggers?.http)), td(limitsText(v.spec?.limits)), td(v.config_version ?? "—"),
      td(isActive ? badge("active") : h("button", { type: "button", "data-activate": v.version, onclick: activate }, "Activate")));
  });
  return table(["Version", "Created", "Size", "SHA-256", "Routes", "Limits", "Config", ""], h("tbody", {}, rows));
}

// A deploy without a `config` part gets the default spec (no routes, no triggers), so the form
// sends the spec, prefilled with the active version's.
function deployForm(name, active) {
  const file = h("input", { id: "component", type: "file", accept: ".wasm,application/wasm" });
  const spec = h("textarea", { id: "spec", rows: 14, spellcheck: "false" }, active ? JSON.stringify(active.spec, null, 2) : "{}");
  const deploy = action(async () => {
    if (!file.files.length) throw new ApiError(0, "no_component", "choose a .wasm component to upload");
    const form = new FormData();
    const text = spec.value.trim();
    if (text) {
      try {
        JSON.parse(text);
      } catch (e) {
        throw new ApiError(0, "invalid_spec", `the deploy spec is not JSON: ${e.message}`);
      }
      form.append("config", new Blob([text], { type: "application/json" }), "config.json");
    }
    form.append("component", file.files[0], file.files[0].name);
    const r = await api(`/v1/functions/${enc(name)}/versions`, { method: "POST", body: form });
    flash = r.unchanged ? `Unchanged: version ${r.version} is already active with these bytes and spec.` : `Deployed and activated version ${r.version}.`;
    rerender();
  });
  return h("div", { class: "deploy" },
    h("label", {}, "Component (.wasm)", file),
    h("label", {}, "Deploy spec (JSON; empty for the default spec)", spec),
    h("button", { id: "deploy", type: "button", onclick: deploy }, "Deploy and activate"));
}

function deleteForm(name) {
  const typed = h("input", { id: "confirm-name", type: "text", autocomplete: "off", placeholder: name });
  const confirm = h("button", { id: "confirm-delete", type: "button", class: "danger", disabled: true,
    onclick: action(async () => {
      await api(`/v1/functions/${enc(name)}`, { method: "DELETE" });
      flash = `Deleted ${name}.`;
      go("#/functions");
    }) }, "Delete permanently");
  typed.addEventListener("input", () => { confirm.disabled = typed.value !== name; });
  const box = h("div", { class: "confirm", hidden: true },
    h("p", {}, "This deletes the function and all its versions. Type its name to confirm."), typed, confirm);
  const reveal = () => {
    box.hidden = false;
    typed.focus();
  };
  return [h("button", { id: "delete", type: "button", class: "danger", onclick: reveal }, "Delete…"), box];
}

// ---------------------------------------------------------------- live metrics

// Prometheus text exposition: `name{label="value",...} value [timestamp]`; comments skipped.
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k] = v.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = /^\+?Inf$/.test(m[3]) ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

// Per function: invocations, 5xx answers, duration buckets (le → cumulative count), instances.
function snapshot(samples) {
  const fns = new Map();
  const of = (name) => {
    if (!fns.has(name)) fns.set(name, { requests: 0, errors: 0, buckets: new Map(), active: null });
    return fns.get(name);
  };
  for (const { name, labels, value } of samples) {
    if (labels.function == null) continue;
    if (name === "faas_invocations_total") {
      const f = of(labels.function);
      f.requests += value;
      if (Number(labels.status) >= 500) f.errors += value;
    } else if (name === "faas_invocation_duration_seconds_bucket") {
      of(labels.function).buckets.set(labels.le === "+Inf" ? Infinity : Number(labels.le), value);
    } else if (name === "faas_active_instances") {
      of(labels.function).active = value;
    }
  }
  return fns;
}

// Prometheus' histogram_quantile: linear within the bucket holding the rank.
function quantile(q, buckets) {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (!total) return null;
  const rank = q * total;
  let [prevLe, prevCount] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((rank - prevCount) / (count - prevCount || 1));
    }
    [prevLe, prevCount] = [le, count];
  }
  return prevLe;
}

// The buckets' counts between two snapshots; all of `now` after a counter reset (a restart).
function bucketsBetween(now, then) {
  const les = [...now.keys()].sort((a, b) => a - b);
  const delta = les.map((le) => [le, now.get(le) - (then?.get(le) ?? 0)]);
  return delta.some(([, n]) => n < 0) ? les.map((le) => [le, now.get(le)]) : delta;
}

function perSecond(now, then, seconds) {
  if (now == null || then == null || seconds <= 0) return null;
  const d = now - then;
  return d < 0 ? now / seconds : d / seconds;
}

function sparkline(values) {
  const [w, ht] = [120, 24];
  const max = Math.max(...values, 0);
  const step = w / (SPARK_POINTS - 1);
  const points = values.map((v, i) => `${(w - (values.length - 1 - i) * step).toFixed(1)},${(ht - 2 - (max ? v / max : 0) * (ht - 4)).toFixed(1)}`);
  return s("svg", { class: "spark", width: w, height: ht, viewBox: `0 0 ${w} ${ht}` },
    s("title", {}, `req/s over the last minute; peak ${fmtRate(max)}`),
    s("polyline", { points: points.join(" "), fill: "none", stroke: "currentColor", "stroke-width": 1.5 }));
}

async function viewMetrics({ root, onLeave }) {
  const known = await optional(allFunctionNames());
  const history = []; // {t, fns}, oldest first, at most a minute
  const body = h("tbody");
  const tick = async () => {
    const fns = snapshot(parseMetrics(await api("/metrics", { text: true })));
    history.push({ t: performance.now(), fns });
    if (history.length > SPARK_POINTS + 1) history.shift();
    const names = [...new Set([...(known ?? []), ...fns.keys()])].sort();
    const [first, prev, last] = [history[0], history.at(-2), history.at(-1)];
    body.replaceChildren(...names.map((name) => {
      const cur = last.fns.get(name);
      const seconds = prev ? (last.t - prev.t) / 1000 : 0;
      const rps = perSecond(cur?.requests ?? 0, prev ? prev.fns.get(name)?.requests ?? 0 : null, seconds);
      const eps = perSecond(cur?.errors ?? 0, prev ? prev.fns.get(name)?.errors ?? 0 : null, seconds);
      // Quantiles over the window shown (since the view opened, at most a minute).
      const span = cur ? bucketsBetween(cur.buckets, history.length > 1 ? first.fns.get(name)?.buckets : null) : [];
      const [p50, p99] = [0.5, 0.99].map((q) => quantile(q, span));
      const spark = history.slice(1).map((snap, i) =>
        perSecond(snap.fns.get(name)?.requests ?? 0, history[i].fns.get(name)?.requests ?? 0, (snap.t - history[i].t) / 1000) ?? 0);
      return h("tr", { "data-function": name },
        td(h("a", { href: `#/functions/${enc(name)}` }, name)), td(fmtRate(rps)), td(fmtRate(eps)),
        td(rps ? `${((100 * eps) / rps).toFixed(1)} %` : "—"),
        td(p50 == null ? "—" : fmtDur(p50 * 1000)), td(p99 == null ? "—" : fmtDur(p99 * 1000)),
        td(cur?.active ?? "—"), td(sparkline(spark)));
    }));
    if (!names.length) body.append(emptyRow(8, "No functions yet."));
    stamp.textContent = `Updated ${fmtTime(Date.now())}`;
  };
  const stamp = h("span", { class: "muted" });
  await tick();
  mount(root, h("h1", {}, "Live metrics ", stamp),
    h("p", { class: "muted" }, `Refreshed every ${POLL_MS / 1000} s from /metrics. Errors are 5xx answers; p50/p99 are estimated from the duration histogram over the last minute.`),
    table(["Function", "req/s", "errors/s", "error rate", "p50", "p99", "instances", "req/s, last minute"], body));
  let timer = null;
  let stopped = false;
  const loop = async () => {
    try {
      await tick();
    } catch (e) {
      showError(e);
    }
    if (!stopped) timer = setTimeout(loop, POLL_MS);
  };
  timer = setTimeout(loop, POLL_MS);
  onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
}

// ---------------------------------------------------------------- streams

async function viewNamespaces({ root }) {
  const { namespaces } = await api("/v1/namespaces");
  const rows = namespaces.map((n) => h("tr", { "data-namespace": n.namespace },
    td(h("a", { href: `#/streams/${enc(n.namespace)}` }, n.namespace)), td(n.streams)));
  mount(root, h("h1", {}, "Streams"),
    table(["Namespace", "Streams"], h("tbody", {}, rows.length ? rows : emptyRow(2, "No events stored yet."))));
}

async function viewStreams({ root }, ns) {
  const body = h("tbody");
  const more = await pager(async (after) => {
    const page = await api(`/v1/namespaces/${enc(ns)}/streams`, { query: { limit: PAGE, after } });
    body.append(...page.streams.map((x) => h("tr", { "data-stream": x.stream },
      td(h("a", { href: `#/streams/${enc(ns)}/${enc(x.stream)}` }, x.stream)), td(x.version))));
    if (!body.rows.length) body.append(emptyRow(2, "No streams."));
    return page.next;
  });
  mount(root, crumbs(["Streams", "#/streams"], ns), h("h1", {}, ns), table(["Stream", "Version"], body), more);
}

async function viewEvents({ root, query }, ns, stream) {
  const backward = query.get("order") === "newest";
  const body = h("tbody");
  const more = await pager(async (from) => {
    const page = await api(`/v1/namespaces/${enc(ns)}/streams/${enc(stream)}`, { query: { from, max: PAGE, backward: backward || null } });
    body.append(...page.events.map((e) => h("tr", { "data-event": e.version },
      td(e.version), td(e.position), td(h("code", {}, e.event_type)), td(time(e.recorded_at)),
      td(h("pre", {}, eventData(e.data)),
        e.metadata?.correlation_id || e.metadata?.causation_id
          ? h("div", { class: "muted" }, `correlation ${e.metadata.correlation_id ?? "—"} · causation ${e.metadata.causation_id ?? "—"}`)
          : null))));
    if (!body.rows.length) body.append(emptyRow(5, "No events."));
    return page.next;
  });
  const here = `#/streams/${enc(ns)}/${enc(stream)}`;
  mount(root, crumbs(["Streams", "#/streams"], [ns, `#/streams/${enc(ns)}`], stream), h("h1", {}, stream),
    h("p", {}, backward ? h("a", { href: here }, "Oldest first") : h("a", { href: `${here}?order=newest` }, "Newest first")),
    table(["Version", "Position", "Type", "Recorded", "Data"], body), more);
}

// ---------------------------------------------------------------- subscriptions

const lagText = (lag) => (lag >= 1000 ? "1000+" : lag);
// The API gives numbers only; the status is derived from them.
const subStatus = (x) => (x.checkpoint == null ? "not started" : x.lag > 0 ? "behind" : "caught up");

async function viewSubscriptions({ root }) {
  const found = [];
  await pool(await allFunctionNames(), 4, async (name) => {
    const r = await optional(api(`/v1/functions/${enc(name)}/subscriptions`, { query: { limit: PAGE } }));
    if (r && (r.subscriptions.length || r.parked.some((p) => p.replayed_at_ms == null))) found.push(r);
  });
  found.sort((a, b) => a.function.localeCompare(b.function));
  mount(root, h("h1", {}, "Subscriptions"),
    found.length ? found.map(subscriptionSection) : h("p", { class: "empty" }, "No function has event subscriptions."));
}

function subscriptionSection(r) {
  const name = r.function;
  const parked = h("tbody");
  // A replayed event stays stored (with replayed_at); the list shows the ones still parked.
  const addParked = (items) => {
    parked.append(...items.filter((p) => p.replayed_at_ms == null).map((p) => parkedRow(name, p)));
  };
  addParked(r.parked);
  if (!parked.rows.length) parked.append(emptyRow(7, "No parked events."));
  let next = r.next;
  const more = h("button", { type: "button", class: "more", hidden: next == null }, "More parked events");
  more.addEventListener("click", action(async () => {
    const page = await api(`/v1/functions/${enc(name)}/subscriptions`, { query: { limit: PAGE, after: next } });
    addParked(page.parked);
    next = page.next;
    more.hidden = next == null;
  }));
  return h("section", { "data-subscriptions": name },
    h("h2", {}, h("a", { href: `#/functions/${enc(name)}` }, name)),
    table(["Streams", "Checkpoint", "Head", "Lag", "Status"], h("tbody", {}, r.subscriptions.map((x) =>
      h("tr", { "data-subscription": x.stream }, td(h("code", {}, x.stream)), td(x.checkpoint ?? "—"), td(x.head),
        td(lagText(x.lag)), td(badge(subStatus(x)))))) ),
    h("h3", {}, "Parked events"),
    table(["Id", "Stream", "Position", "Error", "Attempts", "Parked", ""], parked), more,
    r.subscriptions.length ? resetForm(name, r.subscriptions) : null);
}

function parkedRow(name, p) {
  const replay = action(async () => {
    await api(`/v1/functions/${enc(name)}/parked/${p.id}/replay`, { method: "POST" });
    flash = `Parked event ${p.id} of ${name} delivered again.`;
    rerender();
  });
  return h("tr", { "data-parked": p.id },
    td(p.id), td(h("code", {}, p.subscription)), td(p.position), td(h("span", { class: "error-text" }, p.error)),
    td(p.attempts), td(time(p.parked_at_ms)),
    td(h("button", { type: "button", "data-replay": p.id, onclick: replay }, "Replay")));
}

// A projection rebuild moves the checkpoint back: two clicks, with what it will do spelled out.
function resetForm(name, subscriptions) {
  const which = h("select", {}, subscriptions.map((x) => h("option", { value: x.stream }, x.stream)));
  const position = h("input", { type: "number", min: 0, placeholder: "start" });
  const clearParked = h("input", { type: "checkbox" });
  const clearKv = h("input", { type: "checkbox" });
  const confirm = action(async () => {
    const to = position.value === "" ? { to_start: true } : { to_position: Number(position.value) };
    const r = await api(`/v1/functions/${enc(name)}/subscriptions/reset`, { method: "POST",
      body: { subscription: which.value, ...to, clear_parked: clearParked.checked, clear_kv: clearKv.checked } });
    flash = `Reset ${name} ${r.subscription ?? which.value}: checkpoint ${r.checkpoint ?? "start"} of head ${r.head ?? "?"}.`;
    rerender();
  });
  const box = h("div", { class: "confirm", hidden: true },
    h("p", {}, "Delivery restarts after the new checkpoint: every later event reaches the handler again."),
    h("label", {}, "Subscription", which),
    h("label", {}, "New checkpoint (empty: from the start)", position),
    h("label", { class: "check" }, clearParked, "Also delete its parked events"),
    h("label", { class: "check" }, clearKv, "Also delete the function's kv entries (its read model)"),
    h("button", { type: "button", class: "danger", "data-confirm-reset": name, onclick: confirm }, "Confirm reset"));
  const reveal = (e) => {
    box.hidden = !box.hidden;
    e.currentTarget.textContent = box.hidden ? "Reset (rebuild projection)…" : "Cancel reset";
  };
  return h("div", { class: "reset" }, h("button", { type: "button", "data-reset": name, onclick: reveal }, "Reset (rebuild projection)…"), box);
}

// ---------------------------------------------------------------- sagas

const SAGA_STATUSES = ["running", "compensating", "completed", "compensated", "stuck"];
const TX_STATUSES = ["preparing", "committing", "aborting", "committed", "aborted"];

// The API finds a key only within a namespace; without one, the key filters the rows shown.
function listQuery(query, after) {
  const namespace = query.get("namespace") || null;
  return { status: query.get("status") || null, namespace, key: namespace ? query.get("key") : null, limit: PAGE, after };
}

function keyMatches(query, item) {
  const key = query.get("key");
  return !key || query.get("namespace") || `${item.idempotency_key ?? ""} ${item.id}`.includes(key);
}

const keyFilters = (statuses) => [
  { id: "status", label: "Status", options: statuses },
  { id: "namespace", label: "Namespace", hint: "calling function" },
  { id: "key", label: "Idempotency key", hint: "key (or id)" },
];

async function viewSagas({ root, query }) {
  const body = h("tbody");
  const more = await pager(async (after) => {
    const page = await api("/v1/sagas", { query: listQuery(query, after) });
    body.append(...page.sagas.filter((x) => keyMatches(query, x)).map((x) => h("tr", { "data-saga": x.id },
      td(h("a", { href: `#/sagas/${enc(x.id)}` }, short(x.id))), td(x.name), td(x.namespace), td(x.idempotency_key),
      td(badge(x.status)), td(h("span", { class: "error-text" }, x.error ?? "")), td(time(x.created_at)), td(time(x.updated_at)))));
    if (!body.rows.length) body.append(emptyRow(8, "No sagas."));
    return page.next;
  });
  mount(root, h("h1", {}, "Sagas"), filters("sagas", query, keyFilters(SAGA_STATUSES)),
    table(["Id", "Name", "Namespace", "Key", "Status", "Error", "Created", "Updated"], body), more);
}

async function viewSaga({ root }, id) {
  const saga = await api(`/v1/sagas/${enc(id)}`);
  const status = badge(saga.status);
  status.dataset.sagaStatus = saga.status;
  const resolve = (how, message) => action(async () => {
    await api(`/v1/sagas/${enc(id)}/${how}`, { method: "POST" });
    flash = message;
    rerender();
  });
  const start = sagaStart(saga);
  mount(root, 
    crumbs(["Sagas", "#/sagas"], id),
    h("h1", {}, saga.name, " ", status),
    dl([["Id", h("code", {}, saga.id)], ["Namespace", saga.namespace], ["Idempotency key", saga.idempotency_key],
      ["Owner node", saga.owner], ["Created", time(saga.created_at)], ["Updated", time(saga.updated_at)],
      saga.error && ["Error", h("span", { class: "error-text" }, saga.error)]]),
    saga.status === "stuck" && h("div", { class: "actions" },
      h("button", { id: "resume", type: "button", onclick: resolve("resume", "Resumed: the compensation is retried.") }, "Resume (retry compensation)"),
      h("button", { id: "skip", type: "button", class: "danger", onclick: resolve("skip", "Skipped the failing compensation.") }, "Skip failing compensation")),
    section("Timeline", timeline(saga, start), legend()),
    section("Steps", stepsTable(saga)),
    section("Input", h("pre", {}, prettyText(saga.input))),
    h("details", { class: "journal" }, h("summary", {}, `Journal (${saga.journal.length} entries)`),
      h("ol", {}, saga.journal.map((line) => journalLine(saga, line, start)))));
}

const sagaLive = (saga) => saga.status === "running" || saga.status === "compensating";

function sagaStart(saga) {
  const times = saga.journal.map((l) => Date.parse(l.at)).filter(Number.isFinite);
  return times.length ? Math.min(...times) : Date.parse(saga.created_at);
}

// Each step's action and compensation attempts as [from, to] runs, and marks for attempts,
// errors and skips, folded from the journal as the server folds it (store/saga_state.rs).
function foldRuns(saga, end) {
  const lanes = saga.steps.map(() => ({ action: [], comp: [], marks: [], open: {} }));
  const statuses = [];
  const close = (lane, key, t, outcome, error) => {
    const run = lane.open[key];
    if (run) lane[key].push({ ...run, to: t, outcome, error });
    lane.open[key] = null;
  };
  for (const line of saga.journal) {
    const t = Date.parse(line.at);
    const e = line.entry ?? {};
    if (e.kind === "status") statuses.push({ t, ...e });
    const lane = lanes[e.step];
    if (!lane || !Number.isFinite(t)) continue;
    const attempt = (key, label) => {
      close(lane, key, t, "unknown"); // an attempt journaled again: the host died during the last one
      lane.open[key] = { from: t, attempt: e.attempt };
      lane.marks.push({ t, kind: "attempt", text: `${label} attempt ${e.attempt}` });
    };
    const failed = (key, label) => {
      close(lane, key, t, "err", e.error);
      lane.marks.push({ t, kind: "error", text: `${label} attempt ${e.attempt} failed${e.terminal ? " (final)" : ""}: ${e.error}` });
    };
    switch (e.kind) {
      case "action-attempt": attempt("action", "action"); break;
      case "action-succeeded": close(lane, "action", t, "ok"); break;
      case "action-failed": failed("action", "action"); break;
      case "compensation-attempt": attempt("comp", "compensation"); break;
      case "compensation-succeeded": close(lane, "comp", t, "ok"); break;
      case "compensation-failed": failed("comp", "compensation"); break;
      case "compensation-skipped":
        close(lane, "comp", t, "skipped");
        lane.marks.push({ t, kind: "skip", text: "compensation skipped by an operator" });
        break;
    }
  }
  // Still open: running now, or cut off (its outcome never journaled) in an idle saga.
  for (const lane of lanes) {
    close(lane, "action", end, sagaLive(saga) ? "running" : "unknown");
    close(lane, "comp", end, sagaLive(saga) ? "running" : "unknown");
  }
  // No journal lines for a step (an old saga?): the step's own timestamps.
  saga.steps.forEach((step, i) => {
    if (lanes[i].action.length || !step.started_at) return;
    const to = step.finished_at ? Date.parse(step.finished_at) : end;
    lanes[i].action.push({ from: Date.parse(step.started_at), to, attempt: step.attempts, outcome: step.status === "succeeded" ? "ok" : step.finished_at ? "err" : "running" });
  });
  return { lanes, statuses };
}

// Round tick steps (1, 2, 5 × 10^k ms) giving about six ticks.
function tickStep(span) {
  const raw = span / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw);
}

function timeline(saga, start) {
  const times = saga.journal.map((l) => Date.parse(l.at)).filter(Number.isFinite);
  const end = Math.max(start, ...times, sagaLive(saga) ? Date.now() : start);
  const span = Math.max(end - start, 1);
  const [W, left, right, laneH, axisH] = [960, 160, 20, 30, 26];
  const H = saga.steps.length * laneH + axisH;
  const x = (t) => left + ((t - start) / span) * (W - left - right);
  const { lanes, statuses } = foldRuns(saga, end);
  const outcomeText = { ok: "succeeded", err: "failed", running: "running", unknown: "no outcome journaled", skipped: "skipped" };
  const bar = (run, y, height, kind) => s("rect", {
    class: `bar ${kind} ${run.outcome}`, x: x(run.from).toFixed(1), y, rx: 2, height,
    width: Math.max(2, x(run.to) - x(run.from)).toFixed(1),
  }, s("title", {}, `${kind === "comp" ? "compensation" : "action"} attempt ${run.attempt ?? "?"}: ${outcomeText[run.outcome]} after ${fmtDur(run.to - run.from)} (at +${fmtDur(run.from - start)})${run.error ? `\n${run.error}` : ""}`));
  const mark = (m, y) => {
    const cx = x(m.t).toFixed(1);
    const tip = s("title", {}, `${m.text} (at +${fmtDur(m.t - start)})`);
    if (m.kind === "attempt") return s("line", { class: "mark attempt", x1: cx, x2: cx, y1: y + 2, y2: y + laneH - 2 }, tip);
    const cy = y + laneH / 2;
    const d = m.kind === "error" ? `M${cx - 4},${cy - 4}L${+cx + 4},${cy + 4}M${+cx + 4},${cy - 4}L${cx - 4},${cy + 4}` : `M${cx},${cy - 5}L${+cx + 5},${cy}L${cx},${cy + 5}L${cx - 5},${cy}Z`;
    return s("path", { class: `mark ${m.kind}`, d }, tip);
  };
  const svgEl = s("svg", { id: "timeline", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "saga timeline" });
  saga.steps.forEach((step, i) => {
    const y = i * laneH;
    svgEl.append(s("g", { "data-step": step.name, class: `lane ${i % 2 ? "odd" : "even"}` },
      s("rect", { class: "lane-bg", x: 0, y, width: W, height: laneH }),
      s("text", { class: "lane-label", x: 8, y: y + laneH / 2 + 4 }, s("title", {}, `${step.name}: ${step.status}`), step.name.length > 22 ? `${step.name.slice(0, 21)}…` : step.name),
      lanes[i].action.map((run) => bar(run, y + 5, 13, "action")),
      lanes[i].comp.map((run) => bar(run, y + 20, 7, "comp")),
      lanes[i].marks.map((m) => mark(m, y))));
  });
  const axisY = H - axisH;
  const axis = s("g", { class: "axis" }, s("line", { x1: left, x2: W - right, y1: axisY, y2: axisY }));
  const step = tickStep(span);
  for (let t = 0; t <= span + step / 1000; t += step) {
    axis.append(s("line", { x1: x(start + t), x2: x(start + t), y1: axisY, y2: axisY + 4 }),
      s("text", { x: x(start + t), y: axisY + 16, "text-anchor": "middle" }, t ? `+${fmtDur(t)}` : "0"));
  }
  for (const st of statuses) {
    axis.append(s("line", { class: `status-line ${st.status}`, x1: x(st.t), x2: x(st.t), y1: 0, y2: axisY },
      s("title", {}, `saga ${st.status} at +${fmtDur(st.t - start)}${st.error ? `: ${st.error}` : ""}`)));
  }
  svgEl.append(axis);
  return h("div", { class: "timeline" }, svgEl);
}

function legend() {
  const item = (cls, text) => h("span", { class: "legend-item" }, h("span", { class: `swatch ${cls}` }), text);
  return h("div", { class: "legend" }, item("action ok", "action succeeded"), item("action err", "action failed"),
    item("action running", "running"), item("comp ok", "compensation"), item("comp err", "compensation failed"),
    item("status", "saga status change"));
}

function stepsTable(saga) {
  const rows = saga.steps.map((x) => {
    const end = x.finished_at ? Date.parse(x.finished_at) : sagaLive(saga) ? Date.now() : null;
    const duration = x.started_at && end ? end - Date.parse(x.started_at) : null;
    return h("tr", { "data-step-row": x.name }, td(x.name), td(badge(x.status)), td(`${x.attempts}/${x.max_attempts}`),
      td(x.compensation_attempts), td(h("span", { class: "error-text" }, x.last_error ?? "")), td(fmtDur(duration)),
      td(x.action?.function), td(x.compensation?.function ?? "—"));
  });
  return table(["Step", "Status", "Attempts", "Compensations", "Last error", "Duration", "Function", "Compensation"], h("tbody", {}, rows));
}

function journalLine(saga, line, start) {
  const { kind, step, ...rest } = line.entry ?? {};
  let detail = Object.keys(rest).length ? JSON.stringify(rest) : "";
  if (detail.length > 300) detail = `${detail.slice(0, 300)}…`;
  return h("li", {}, h("code", {}, `#${line.seq}`), " ", time(line.at), ` +${fmtDur(Date.parse(line.at) - start)} `,
    h("strong", {}, kind), step != null ? ` ${saga.steps[step]?.name ?? `step ${step}`}` : "", detail ? " " : "",
    detail && h("code", { class: "detail" }, detail));
}

// ---------------------------------------------------------------- transactions

async function viewTransactions({ root, query }) {
  const body = h("tbody");
  const more = await pager(async (after) => {
    const page = await api("/v1/transactions", { query: listQuery(query, after) });
    body.append(...page.transactions.filter((x) => keyMatches(query, x)).map((x) => h("tr", { "data-transaction": x.id },
      td(h("a", { href: `#/transactions/${enc(x.id)}` }, short(x.id))), td(x.namespace), td(x.idempotency_key ?? "—"),
      td(badge(x.status)), td(list(x.participants.map((p) => p.function))), td(h("span", { class: "error-text" }, x.reason ?? "")),
      td(time(x.created_at)), td(time(x.updated_at)))));
    if (!body.rows.length) body.append(emptyRow(8, "No transactions."));
    return page.next;
  });
  mount(root, h("h1", {}, "Transactions"), filters("transactions", query, keyFilters(TX_STATUSES)),
    table(["Id", "Namespace", "Key", "Status", "Participants", "Reason", "Created", "Updated"], body), more);
}

// A participant's vote is `commit`, the reason it did not vote commit, or none yet.
function voteState(tx, vote) {
  if (vote == null) return tx.status === "preparing" ? "awaiting vote" : "no vote";
  return vote === "commit" ? "voted commit" : "voted abort";
}

async function viewTransaction({ root }, id) {
  const tx = await api(`/v1/transactions/${enc(id)}`);
  const status = badge(tx.status);
  status.dataset.txStatus = tx.status;
  const rows = tx.participants.map((p, i) => h("tr", { "data-participant": i },
    td(i + 1), td(h("a", { href: `#/functions/${enc(p.function)}` }, p.function)), td(badge(voteState(tx, p.vote))),
    td(h("span", { class: "error-text" }, p.vote && p.vote !== "commit" ? p.vote : "")), td(h("pre", {}, prettyText(p.payload)))));
  mount(root, crumbs(["Transactions", "#/transactions"], id), h("h1", {}, "Transaction ", status),
    dl([["Id", h("code", {}, tx.id)], ["Namespace", tx.namespace], ["Idempotency key", tx.idempotency_key],
      ["Coordinator node", tx.owner], ["Reason", tx.reason], ["Created", time(tx.created_at)], ["Updated", time(tx.updated_at)]]),
    section("Participants", table(["#", "Function", "State", "Reason", "Payload"], h("tbody", {}, rows))));
}

// ---------------------------------------------------------------- Kafka

async function viewKafka({ root }) {
  // Every node's view: each consumes only the partitions its group gave it.
  const { nodes } = await api("/v1/kafka");
  const here = nodes[0];
  if (!here.configured) {
    mount(root, h("h1", {}, "Kafka"), h("p", { class: "empty", id: "kafka-status" }, "Kafka not configured"));
    return;
  }
  const brokers = Array.isArray(here.brokers) ? here.brokers : String(here.brokers ?? "").split(",").filter(Boolean);
  mount(root, h("h1", {}, "Kafka ", badge(here.connected ? "connected" : "disconnected")),
    dl([["Brokers", list(brokers)], ["Nodes", nodes.length]]),
    nodes.map((n, i) => h("section", { "data-kafka-node": n.node },
      h("h2", {}, "Node ", h("code", {}, n.node), i === 0 ? [" ", badge("this node", "ok")] : null,
        n.ok ? [" ", badge(n.connected ? "connected" : "disconnected")] : [" ", badge("not reached", "err")]),
      !n.ok ? h("p", { class: "error-text" }, n.error)
        : [n.last_error ? h("p", { class: "error-text" }, n.last_error) : null,
          (n.triggers ?? []).length ? n.triggers.map(kafkaTrigger) : h("p", { class: "empty" }, "No Kafka triggers run on this node.")])));
}

function kafkaTrigger(t) {
  const outcomes = ["handled", "failed", "dead_lettered", "dropped"];
  const blocked = t.dead_letter_blocked ?? [];
  return h("section", { "data-trigger": t.function },
    h("h3", {}, h("a", { href: `#/functions/${enc(t.function)}` }, t.function)),
    dl([["Group", t.group], ["Topics", list(t.topics)]]),
    h("h4", {}, "Assigned partitions"),
    table(["Topic", "Partition", "Lag"], h("tbody", {}, t.assigned?.length
      ? t.assigned.map((a) => h("tr", { "data-partition": `${a.topic}/${a.partition}` }, td(a.topic), td(a.partition), td(a.lag ?? "—")))
      : emptyRow(3, "None assigned to this node."))),
    h("h4", {}, "Records since the node started"),
    table(["Topic", ...outcomes], h("tbody", {}, (t.topics ?? []).map((topic) => {
      const counts = t.records?.[topic] ?? {};
      return h("tr", {}, td(topic), outcomes.map((o) => td(counts[o] ?? 0)));
    }))),
    blocked.length ? [h("h4", {}, "Blocked on the dead-letter topic"),
      table(["Topic", "Partition", "Offset", "DLQ", "Error", "Since"], h("tbody", {}, blocked.map((b) =>
        h("tr", {}, td(b.topic), td(b.partition), td(b.offset), td(b.dead_letter_topic), td(h("span", { class: "error-text" }, b.error)), td(time(b.since))))))]
      : null);
}

// ---------------------------------------------------------------- nodes

async function viewNodes({ root }) {
  const r = await api("/v1/nodes");
  const rows = r.nodes.map((n) => h("tr", { "data-node": n.id },
    td(h("code", {}, n.id)), td(n.this_node ? badge("this node", "ok") : ""),
    td(badge(n.alive ? "alive" : n.leaving ? "leaving" : "down")), td(`${fmtDur(n.heartbeat_age_ms)} ago`),
    td(n.leases.length ? h("ul", { class: "plain" }, n.leases.map((l) => h("li", {}, h("code", {}, l.name), ` (epoch ${l.epoch}, expires in ${fmtDur(l.expires_in_ms)})`))) : "—")));
  mount(root, h("h1", {}, "Nodes"),
    table(["Node", "", "State", "Heartbeat", "Leases held"], h("tbody", {}, rows.length ? rows : emptyRow(5, "No nodes."))),
    section("Free leases", r.free_leases.length ? h("ul", { class: "plain" }, r.free_leases.map((n) => h("li", {}, h("code", {}, n)))) : h("p", { class: "empty" }, "None: every lease is held.")));
}

// ---------------------------------------------------------------- invocations

async function viewInvocations({ root, query }) {
  const body = h("tbody");
  const more = await pager(async (after) => {
    const page = await api("/v1/invocations", { query: { function: query.get("function"), status: query.get("status"), limit: PAGE, after } });
    body.append(...page.invocations.map(invocationRow));
    if (!body.rows.length) body.append(emptyRow(10, "No invocations."));
    return page.next;
  });
  mount(root, h("h1", {}, "Async invocations"),
    filters("invocations", query, [{ id: "status", label: "Status", options: ["queued", "running", "succeeded", "failed", "dead"] },
      { id: "function", label: "Function", hint: "function name" }]),
    table(["Id", "Function", "Status", "Attempts", "Request", "Response", "Error", "Created", "Finished", ""], body), more);
}

function invocationRow(x) {
  const replay = action(async () => {
    const r = await api(`/v1/invocations/${enc(x.id)}/replay`, { method: "POST" });
    flash = `Invocation ${r.id} queued again.`;
    rerender();
  });
  const canReplay = x.status === "failed" || x.status === "dead";
  return h("tr", { "data-invocation": x.id },
    td(short(x.id)), td(h("a", { href: `#/functions/${enc(x.function)}` }, x.function)), td(badge(x.status)),
    td(`${x.attempts}/${x.max_attempts}${x.replays ? ` · ${x.replays} replay(s)` : ""}`),
    td(h("code", {}, `${x.request?.method ?? ""} ${x.request?.path ?? ""}`)), td(x.response?.status ?? "—"),
    td(h("span", { class: "error-text" }, x.error ?? "")), td(time(x.created_at)), td(time(x.finished_at)),
    td(canReplay ? h("button", { type: "button", "data-replay": x.id, onclick: replay }, "Replay") : ""));
}

// ---------------------------------------------------------------- start

async function boot() {
  $("#logout").addEventListener("click", action(logout));
  window.addEventListener("hashchange", () => location.hash !== routed && route());
  // A link's navigation renders on hashchange, a moment later: until then the old page is stale.
  document.addEventListener("click", (e) => {
    const link = e.target.closest?.('a[href^="#"]');
    if (link && link.getAttribute("href") !== location.hash) document.body.dataset.loaded = "false";
  });
  let failure = null;
  try {
    const r = await api("/ui/session", { noRedirect: true });
    session.csrf = r.csrf ?? "";
    session.auth = r.auth ?? "cookie";
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) failure = e;
  }
  showAuth();
  if (!session.auth && parseHash().parts[0] !== "login") history.replaceState(null, "", "#/login");
  route();
  // After route() started: it clears the banner first thing.
  if (failure) showError(failure);
}

boot();
