// The dashboard page: reads the JSON API (/api/requests, /api/requests/{id}) and follows
// /api/events (server-sent events) for live updates. Plain JavaScript, no build step.
// Data is inserted as text (textContent), never as HTML.
"use strict";

const STATUS_GROUPS = {
  open: ["awaiting_verification", "awaiting_approval", "awaiting_fee", "in_progress", "action_required", "stalled"],
  finished: ["completed", "partially_completed", "failed", "refused"],
};
const TRIGGERS = {
  submitted: "received",
  verified: "identity verified",
  dispatched: "sent to the systems",
  outcome: "a system reported",
  retry: "retry scheduled",
  extended: "deadline extended",
  due_soon: "due soon",
  overdue: "deadline passed",
  finished: "finished",
  decided: "officer's decision",
  verification_rejected: "verification did not count",
};
const REFUSAL_REASONS = {
  manifestly_unfounded: "manifestly unfounded (Art. 12(5)(b))",
  excessive: "excessive (Art. 12(5)(b))",
  identity_not_established: "identity not established (Art. 12(6), 11(2))",
  statutory_exemption: "statutory exemption (Art. 23 GDPR, Art. 41 UAVG)",
  other: "other (explain)",
};
const HOLD_REASONS = {
  dispute: "dispute",
  debt_collection: "debt collection",
  other_legal_claim: "other legal claim (explain)",
};

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function words(value) {
  return String(value).replaceAll("_", " ");
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function day(iso) {
  return iso ? when(iso).slice(0, 10) : "—";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 1) return "under a second";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

function notice(text) {
  const node = $("#notice");
  node.textContent = text || "";
  node.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("signed out");
  }
  return response;
}

async function problem(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch {
    return response.statusText;
  }
}

// The JSON the API answers, or null after showing why not. While a restarted dashboard still
// reads the status topic (503), `retry` runs again a second later.
async function fetchJson(path, retry) {
  const response = await api(path);
  if (response.status === 503) {
    notice("Reading the status topic after a restart…");
    setTimeout(retry, 1000);
    return null;
  }
  if (!response.ok) {
    notice(await problem(response));
    return null;
  }
  notice("");
  return response.json();
}

// -- live updates ---------------------------------------------------------------------------

// `onSweep` (optional) hears of every sweep that changed; the request pages ignore sweeps.
function follow(onRequest, onReload, onSweep = null) {
  const live = $("#live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => {
    live.dataset.state = "live";
    live.textContent = "live";
    onReload(); // (re)connected: catch up on anything missed meanwhile
  });
  source.addEventListener("request", (event) => onRequest(JSON.parse(event.data)));
  source.addEventListener("reload", () => onReload());
  if (onSweep) source.addEventListener("sweep", (event) => onSweep(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting…";
  });
  return source;
}

// -- the list -------------------------------------------------------------------------------

const list = {
  rows: new Map(),
  filter: {},
  totals: null,
  matched: 0,
  limit: 1000,
  scheduled: false,
};

function readFilter() {
  const form = $("#filters");
  return {
    status: form.status.value,
    type: form.type.value,
    overdue: form.overdue.checked,
    q: form.q.value.trim(),
  };
}

function writeFilter(params) {
  const form = $("#filters");
  form.status.value = params.get("status") || "";
  form.type.value = params.get("type") || "";
  form.overdue.checked = params.get("overdue") === "true";
  form.q.value = params.get("q") || "";
}

function query(filter) {
  const params = new URLSearchParams();
  if (filter.status) params.set("status", filter.status);
  if (filter.type) params.set("type", filter.type);
  if (filter.overdue) params.set("overdue", "true");
  if (filter.q) params.set("q", filter.q);
  return params;
}

function matches(row, filter) {
  if (filter.status) {
    const allowed = STATUS_GROUPS[filter.status] || [filter.status];
    if (!allowed.includes(row.status)) return false;
  }
  if (filter.type && row.type !== filter.type) return false;
  if (filter.overdue && !row.overdue) return false;
  if (filter.q && !row.request_id.toLowerCase().includes(filter.q.toLowerCase())) return false;
  return true;
}

function urgency(a, b) {
  const rank = (r) => (r.open ? (r.overdue ? 0 : 1) : 2);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (a.open) return Date.parse(a.deadline) - Date.parse(b.deadline);
  return Date.parse(b.finished_at || b.updated_at) - Date.parse(a.finished_at || a.updated_at);
}

async function loadList() {
  list.filter = readFilter();
  const params = query(list.filter);
  history.replaceState(null, "", params.toString() ? `/?${params}` : "/");
  params.set("limit", String(list.limit));
  const page = await fetchJson(`/api/requests?${params}`, loadList);
  if (page === null) return;
  list.rows = new Map(page.requests.map((r) => [r.request_id, r]));
  list.totals = page.totals;
  list.matched = page.matched;
  renderList();
}

let totalsTimer = null;

function refreshTotalsSoon() {
  // Totals count every request, not only the listed ones: ask the API again, at most 3 times a
  // second however many events arrive.
  if (totalsTimer) return;
  totalsTimer = setTimeout(async () => {
    totalsTimer = null;
    const response = await api(`/api/requests?${query(list.filter)}&limit=1`);
    if (response.ok) {
      const page = await response.json();
      list.totals = page.totals;
      list.matched = page.matched;
      scheduleRender();
    }
  }, 300);
}

function upsert(row) {
  const known = list.rows.has(row.request_id);
  if (matches(row, list.filter)) {
    list.rows.set(row.request_id, row);
    if (!known) list.matched += 1;
  } else if (known) {
    list.rows.delete(row.request_id);
    list.matched -= 1;
  }
  scheduleRender();
  refreshTotalsSoon();
}

function scheduleRender() {
  if (list.scheduled) return;
  list.scheduled = true;
  requestAnimationFrame(() => {
    list.scheduled = false;
    renderList();
  });
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind}`, text });
}

function statusCell(row) {
  return statusBadges(row, "td", row.deadline_extended ? badge("extended", "extended") : null);
}

function systemsCell(row) {
  const parts = [
    el("progress", { value: row.systems_done, max: Math.max(row.systems_total, 1) }),
    el("span", { class: "count", text: `${row.systems_done}/${row.systems_total}` }),
  ];
  if (row.manual_tasks) parts.push(badge(`${row.manual_tasks} manual`, "manual"));
  if (row.failed_systems) parts.push(badge(`${row.failed_systems} failed`, "failed"));
  return el("td", { class: "systems" }, parts);
}

function renderList() {
  const rows = [...list.rows.values()].sort(urgency);
  const body = $("#requests tbody");
  body.replaceChildren(
    ...rows.map((row) => {
      const classes = [row.overdue ? "overdue" : "", row.due_soon ? "due-soon" : "", row.open ? "open" : "finished"];
      return el(
        "tr",
        { class: classes.filter(Boolean).join(" "), "data-request-id": row.request_id },
        el("td", { class: "id" }, el("a", { href: row.href, text: row.request_id })),
        el("td", { text: words(row.type) }),
        statusCell(row),
        el("td", { text: when(row.received_at) }),
        el("td", { text: day(row.deadline) }),
        el("td", { class: "num days-left", text: row.open ? String(row.days_left) : "—" }),
        systemsCell(row),
      );
    }),
  );
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No requests match." })));
  }
  const t = list.totals;
  if (t) {
    $("#totals").replaceChildren(
      total("open", t.open, "open"),
      total("overdue", t.overdue, t.overdue ? "overdue" : ""),
      total("due soon", t.due_soon, t.due_soon ? "due-soon" : ""),
      total("action required", t.action_required, t.action_required ? "manual" : ""),
      total("finished", t.finished, ""),
    );
  }
  const extra = list.matched > rows.length ? ` (the first ${rows.length})` : "";
  $("#shown").textContent = `${list.matched} request${list.matched === 1 ? "" : "s"} shown${extra}.`;
}

function total(label, value, kind) {
  return el("div", { class: `total ${kind}` }, el("strong", { text: String(value) }), el("span", { text: label }));
}

function startList() {
  $("#list-view").hidden = false;
  writeFilter(new URLSearchParams(location.search));
  const form = $("#filters");
  form.addEventListener("change", loadList);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    loadList();
  });
  let typing = null;
  form.q.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(loadList, 300);
  });
  follow(upsert, loadList);
}

// -- one request ----------------------------------------------------------------------------

const detailState = { id: null, loading: false, again: false };

async function loadDetail() {
  if (detailState.loading) {
    detailState.again = true;
    return;
  }
  detailState.loading = true;
  try {
    const path = `/api/requests/${encodeURIComponent(detailState.id)}`;
    const found = await fetchJson(path, loadDetail);
    if (found !== null) renderDetail(found);
  } finally {
    detailState.loading = false;
    if (detailState.again) {
      detailState.again = false;
      loadDetail();
    }
  }
}

function fact(term, ...value) {
  return [el("dt", { text: term }), el("dd", {}, ...value)];
}

function renderDetail(r) {
  document.title = `${r.request_id}: data-subject requests`;
  $("#d-title").replaceChildren(el("span", { text: r.request_id }), " ", statusBadges(r));
  $("#d-facts").replaceChildren(
    ...fact("Type", words(r.type)),
    ...fact("Received", when(r.received_at)),
    ...fact("Identity verified", when(r.verified_at)),
    ...fact("Deadline", day(r.deadline), r.deadline_extended ? " (extended)" : ""),
    ...fact("Days left", r.open ? String(r.days_left) : "—"),
    ...fact("Systems", `${r.systems_done} of ${r.systems_total} done`),
    ...fact("Finished", when(r.finished_at)),
    ...(r.reason ? fact("Reason", r.reason) : []),
  );
  renderFiles(r);
  renderNextStep(r);
  // A task form being filled in survives live updates: the same element moves to the new card.
  const forms = new Map([...document.querySelectorAll("form.task")].map((f) => [f.dataset.task, f]));
  $("#d-systems").replaceChildren(...r.systems.map((s) => systemCard(r, s, forms)));
  $("#d-timeline tbody").replaceChildren(
    ...r.timeline.map((e) =>
      el(
        "tr",
        { "data-sequence": e.sequence, class: e.overdue ? "overdue" : "" },
        el("td", { class: "num", text: String(e.sequence) }),
        el("td", { text: when(e.occurred_at) }),
        el("td", { text: TRIGGERS[e.trigger] || words(e.trigger) }),
        el("td", { text: e.previous_status && e.previous_status !== e.status ? `${words(e.previous_status)} → ${words(e.status)}` : words(e.status) }),
        el("td", { text: `${e.systems_done}/${e.systems_total}` }),
        el("td", { text: e.reason || "" }),
      ),
    ),
  );
}

// A request's status and its deadline flags as badges, in a `tag` element, then `more`.
function statusBadges(r, tag = "span", ...more) {
  return el(
    tag,
    { class: "status", "data-status": r.status },
    badge(words(r.status), `s-${r.status}`),
    r.overdue ? badge("overdue", "overdue") : null,
    r.due_soon ? badge("due soon", "due-soon") : null,
    r.finished_late ? badge("finished late", "late") : null,
    ...more,
  );
}

function renderFiles(r) {
  const box = $("#d-files");
  if (!r.files.length) {
    box.replaceChildren(
      el("p", { class: "muted", text: r.open ? "The export or certificate appears here once the request is finished." : "No documents for this request." }),
    );
    return;
  }
  box.replaceChildren(
    el("h2", { text: "Documents" }),
    el(
      "ul",
      {},
      r.files.map((f) =>
        el("li", {}, el("a", { href: f.href, download: f.filename, "data-file": f.name, text: f.title }), el("span", { class: "muted", text: ` ${f.filename}, ${Math.max(1, Math.round(f.size / 1024))} KB` })),
      ),
    ),
  );
}

function systemCard(r, s, forms) {
  const counts = Object.entries(s.counts)
    .filter(([, n]) => n)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  const card = el(
    "article",
    { class: `system s-${s.status}`, "data-system": s.system, "data-status": s.status },
    el("h3", {}, el("span", { text: s.system }), " ", badge(words(s.status), `s-${s.status}`)),
    el(
      "p",
      { class: "meta" },
      counts ? el("span", { class: "counts", text: counts }) : el("span", { class: "muted", text: "no counts" }),
      s.attempt > 1 ? el("span", { text: ` · attempt ${s.attempt}` }) : null,
      s.latency_seconds !== null ? el("span", { text: ` · took ${duration(s.latency_seconds)}` }) : null,
      s.updated_at ? el("span", { class: "muted", text: ` · ${when(s.updated_at)}` }) : null,
    ),
  );
  if (s.reason) card.append(el("p", { class: "reason", text: s.reason }));
  if (s.retained.length) {
    card.append(
      el(
        "table",
        { class: "retained" },
        el("thead", {}, el("tr", {}, ["Retained", "Count", "Legal basis", "Until", "Why"].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          s.retained.map((item) =>
            el("tr", {}, el("td", { text: item.collection }), el("td", { class: "num", text: String(item.count) }), el("td", { text: item.legal_basis }), el("td", { text: item.until || "—" }), el("td", { text: item.reason || "" })),
          ),
        ),
      ),
    );
  }
  if (s.evidence.length) {
    card.append(el("ul", { class: "evidence" }, s.evidence.map((e) => el("li", {}, el("span", { class: "muted", text: `${words(e.kind)}: ` }), e.value))));
  }
  if (s.instructions) {
    card.append(el("div", { class: "instructions" }, el("strong", { text: "What a person must do" }), el("p", { text: s.instructions })));
  }
  if (s.task_id) card.append(forms.get(s.task_id) || taskForm(r, s));
  return card;
}

function taskForm(r, s) {
  const message = el("p", { class: "result", role: "status" });
  const form = el(
    "form",
    { class: "task", "data-task": s.task_id },
    el("label", {}, "Evidence (what was done; no personal data)", el("textarea", { name: "evidence", required: true, maxLength: 2000, rows: 2 })),
    el("label", {}, "By (staff id)", el("input", { name: "by", maxLength: 128, autocomplete: "off" })),
    el(
      "label",
      {},
      "Outcome",
      el("select", { name: "outcome" }, el("option", { value: "completed", text: "done" }), el("option", { value: "not_found", text: "nothing found" })),
    ),
    el("button", { type: "submit", text: "Mark task done" }),
    message,
  );
  const path = `/api/requests/${encodeURIComponent(r.request_id)}/tasks/${encodeURIComponent(s.system)}/complete`;
  postOnSubmit(form, message, path, () => ({ evidence: form.evidence.value, by: form.by.value.trim() || null, outcome: form.outcome.value }));
  return form;
}

// On submit: POST the form's body as JSON to `path`; 202 means recorded, else show the problem.
function postOnSubmit(form, message, path, body) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("button", form);
    button.disabled = true;
    message.textContent = "Recording…";
    try {
      const response = await api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body()),
      });
      if (response.status === 202) {
        message.textContent = "Recorded; the status follows in a moment.";
        form.dataset.recorded = "true";
      } else {
        message.textContent = await problem(response);
        button.disabled = false;
      }
    } catch (error) {
      message.textContent = String(error);
      button.disabled = false;
    }
  });
}

// -- an officer's steps: decisions, identity verification, extension ----------------------------

function options(values) {
  return Object.entries(values).map(([value, text]) => el("option", { value, text }));
}

function choices(values) {
  return options(Object.fromEntries(values.map((v) => [v, words(v)])));
}

function field(label, control) {
  return el("label", {}, label, control);
}

function explanation() {
  return field("Explanation (for the subject's letter; required with 'other')", el("textarea", { name: "explanation", maxLength: 2000, rows: 2 }));
}

function today(days = 0) {
  const d = new Date(Date.now() + days * 86400000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function text(form, name) {
  const value = form[name].value.trim();
  return value || null;
}

// A refusal's reason code and explanation: the same for the whole request and for one system.
const refusalFields = () => [field("Reason", el("select", { name: "reason_code" }, options(REFUSAL_REASONS))), explanation()];
const refusal = (form) => ({ reason_code: form.reason_code.value, explanation: text(form, "explanation") });

// Per action: the form's title, its fields, the API path and the body it posts.
const ACTIONS = {
  verify: {
    title: "Verify identity",
    path: "verifications",
    fields: (r) => [
      field("Method", el("select", { name: "method" }, choices(r.verification_methods))),
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "copy_destroyed" }), " ID copy destroyed (none is kept)"),
    ],
    body: (form) => ({ method: form.method.value, copy_destroyed_at: form.copy_destroyed.checked ? new Date().toISOString() : null }),
  },
  approve: { title: "Approve", path: "decisions", fields: () => [], body: () => ({ decision: "approve" }) },
  refuse: {
    title: "Refuse the request",
    path: "decisions",
    fields: refusalFields,
    body: (form) => ({ decision: "refuse", ...refusal(form) }),
  },
  refuse_system: {
    title: "Refuse one system",
    path: "decisions",
    fields: (r) => [field("System", el("select", { name: "system" }, choices(r.next_step.refusable_systems))), ...refusalFields()],
    body: (form) => ({ decision: "refuse_system", system: form.system.value, ...refusal(form) }),
  },
  legal_hold: {
    title: "Legal hold on one system",
    path: "decisions",
    fields: (r) => [
      field("System", el("select", { name: "system" }, choices(r.next_step.holdable_systems))),
      field("Reason (Art. 17(3)(e))", el("select", { name: "hold_reason" }, options(HOLD_REASONS))),
      field("Review date", el("input", { type: "date", name: "review_date", required: true, min: today(1) })),
      explanation(),
    ],
    body: (form) => ({ decision: "legal_hold", system: form.system.value, hold_reason: form.hold_reason.value, review_date: form.review_date.value, explanation: text(form, "explanation") }),
  },
  fee: {
    title: "Charge a fee (Art. 12(5)(a))",
    path: "decisions",
    fields: () => [field("Amount (EUR)", el("input", { type: "number", name: "fee_eur", min: 1, max: 10000, required: true }))],
    body: (form) => ({ decision: "fee", fee_eur: Number(form.fee_eur.value) }),
  },
  fee_paid: { title: "Mark the fee paid", path: "decisions", fields: () => [], body: () => ({ decision: "fee_paid" }) },
  deliver: {
    title: "Record delivery (Art. 12(3): answered when the requester has it)",
    path: "deliveries",
    fields: () => [field("How", el("select", { name: "channel" }, options({ post: "Post", zivver: "ZIVVER", in_person: "In person", email: "E-mail" })))],
    body: (form) => ({ channel: form.channel.value }),
  },
  extend: {
    title: "Extend the deadline (Art. 12(3))",
    path: "extensions",
    fields: () => [
      field("By", el("select", { name: "months" }, options({ 1: "1 month", 2: "2 months" }))),
      field("Reason (as the subject will be told; no personal data)", el("textarea", { name: "reason", required: true, minLength: 10, maxLength: 1000, rows: 2 })),
    ],
    body: (form) => ({ months: Number(form.months.value), reason: form.reason.value.trim() }),
  },
};

function renderNextStep(r) {
  const step = r.next_step;
  const next = $("#d-next .next");
  next.textContent = step.text;
  next.dataset.step = step.code;
  // Forms being filled in survive live updates while the same actions are offered.
  const key = JSON.stringify([step.actions, step.refusable_systems, step.holdable_systems, r.verification_methods]);
  const box = $("#d-next .actions");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...step.actions.map((action) => actionForm(r, action)));
}

function actionForm(r, action) {
  const spec = ACTIONS[action];
  const message = el("p", { class: "result", role: "status" });
  const form = el(
    "form",
    { class: "decision", "data-action": action },
    el("h3", { text: spec.title }),
    ...spec.fields(r),
    el("button", { type: "submit", text: spec.title }),
    message,
  );
  const needsText = () => {
    const free = ["other", "other_legal_claim"];
    const chosen = (form.reason_code && form.reason_code.value) || (form.hold_reason && form.hold_reason.value);
    if (form.explanation) form.explanation.required = free.includes(chosen);
  };
  form.addEventListener("change", needsText);
  needsText();
  postOnSubmit(form, message, `/api/requests/${encodeURIComponent(r.request_id)}/${spec.path}`, () => spec.body(form));
  return form;
}

function startDetail(id) {
  detailState.id = id;
  $("#detail-view").hidden = false;
  follow((row) => {
    if (row.request_id === detailState.id) loadDetail();
  }, loadDetail);
}

// -- start ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  const match = location.pathname.match(/^\/requests\/(.+)$/);
  const sweep = location.pathname.match(/^\/sweeps\/(.+)$/);
  if (match) startDetail(decodeURIComponent(match[1]));
  else if (sweep) startSweep(decodeURIComponent(sweep[1])); // sweeps.js
  else if (location.pathname === "/sweeps") startSweeps();
  else startList();
});
