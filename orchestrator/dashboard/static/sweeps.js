// The retention sweep pages: /sweeps (systems with a sweep policy, and the sweeps) and
// /sweeps/{id} (one sweep). They read /api/sweeps and follow the `sweep` server-sent events.
// Uses the helpers of app.js (loaded first); data is inserted as text, never as HTML.
"use strict";

const SWEEP_TRIGGERS = { schedule: "schedule", manual: "an officer" };

function count(value) {
  return value === null || value === undefined ? "—" : String(value);
}

// Runs `load` at most every 300 ms however many changes arrive.
function debounced(load) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      load();
    }, 300);
  };
}

// -- the list -------------------------------------------------------------------------------

async function loadSweeps() {
  const page = await fetchJson("/api/sweeps", loadSweeps);
  if (page !== null) renderSweeps(page);
}

function renderSweeps(page) {
  const problemNote = $("#s-problem");
  problemNote.textContent = page.register_problem || "";
  problemNote.hidden = !page.register_problem;
  const t = page.totals;
  $("#s-totals").replaceChildren(
    total("systems swept", t.systems, ""),
    total("overdue", t.overdue, t.overdue ? "overdue" : ""),
    total("awaiting approval", t.awaiting_approval, t.awaiting_approval ? "manual" : ""),
    total("running", t.running, ""),
    total("records swept", t.records_swept, ""),
  );
  const systems = $("#sweep-systems tbody");
  systems.replaceChildren(...page.systems.map(systemRow));
  if (!page.systems.length) {
    systems.append(el("tr", {}, el("td", { colspan: 9, class: "muted", text: "No system in the register has a sweep policy." })));
  }
  const sweeps = $("#sweep-list tbody");
  sweeps.replaceChildren(...page.sweeps.map(sweepRow));
  if (!page.sweeps.length) {
    sweeps.append(el("tr", {}, el("td", { colspan: 9, class: "muted", text: "No sweep has run yet." })));
  }
  const extra = page.matched > page.sweeps.length ? ` (the first ${page.sweeps.length})` : "";
  $("#s-shown").textContent = `${page.matched} sweep${page.matched === 1 ? "" : "s"}${extra}.`;
}

function sweepBadges(s, ...more) {
  return el("td", { class: "status", "data-status": s ? s.status : "never" }, s ? badge(words(s.status), `s-${s.status}`) : null, ...more);
}

function systemRow(row) {
  const last = row.last_sweep;
  const classes = [row.overdue ? "overdue" : "", row.awaiting_approval ? "awaiting" : ""];
  return el(
    "tr",
    { class: classes.filter(Boolean).join(" "), "data-system": row.system },
    el("td", {}, el("strong", { text: row.system }), row.title ? el("span", { class: "muted title", text: row.title }) : null),
    el("td", {}, `every ${row.schedule}`, el("span", { class: "muted title", text: row.approval === "required" ? "approval required" : "no approval needed" })),
    el("td", {}, last ? [el("a", { href: last.href, text: last.sweep_id }), el("span", { class: "muted title", text: when(last.requested_at) })] : el("span", { class: "muted", text: "never swept" })),
    sweepBadges(
      last,
      row.overdue ? badge("overdue", "overdue") : null,
      // Older sweeps still waiting, besides the last one.
      row.awaiting_approval && !(last && last.status === "awaiting_approval") ? badge(`${row.awaiting_approval} awaiting approval`, "awaiting") : null,
    ),
    el("td", { class: "num expired", text: last ? String(last.expired) : "—" }),
    el("td", { class: "num deleted", text: last ? String(last.deleted + last.anonymised) : "—" }),
    el("td", { class: "num kept", text: last ? String(last.kept) : "—" }),
    el("td", { class: "due", text: row.next_due ? when(row.next_due) : "now (never swept)" }),
    el("td", {}, startForm(row)),
  );
}

function startForm(row) {
  const message = el("p", { class: "result", role: "status" });
  const form = el(
    "form",
    { class: "start", "data-system": row.system },
    el("button", { type: "submit", text: "Start dry run", disabled: !row.can_start, title: row.can_start ? "Count what has expired; nothing is deleted" : "A sweep of this system is under way" }),
    message,
  );
  postOnSubmit(form, message, "/api/sweeps", () => ({ system: row.system, dry_run: true }));
  return form;
}

function sweepRow(s) {
  return el(
    "tr",
    { class: s.status === "awaiting_approval" ? "awaiting" : "", "data-sweep-id": s.sweep_id },
    el("td", { class: "id" }, el("a", { href: s.href, text: s.sweep_id })),
    el("td", { text: s.system }),
    el("td", { text: s.requested_by || SWEEP_TRIGGERS[s.trigger] || words(s.trigger) }),
    sweepBadges(s),
    el("td", { text: when(s.requested_at) }),
    el("td", { class: "num expired", text: String(s.expired) }),
    el("td", { class: "num deleted", text: String(s.deleted + s.anonymised) }),
    el("td", { class: "num kept", text: String(s.kept) }),
    el("td", { text: s.approved_by || "—" }),
  );
}

function startSweeps() {
  document.title = "Retention sweeps";
  $("#sweeps-view").hidden = false;
  const soon = debounced(loadSweeps);
  follow(() => {}, loadSweeps, soon);
  setInterval(loadSweeps, 60000); // overdue is a matter of time too
}

// -- one sweep ------------------------------------------------------------------------------

const sweepState = { id: null };

async function loadSweep() {
  const found = await fetchJson(`/api/sweeps/${encodeURIComponent(sweepState.id)}`, loadSweep);
  if (found !== null) renderSweep(found);
}

function renderSweep(s) {
  document.title = `${s.sweep_id}: retention sweeps`;
  $("#sw-title").replaceChildren(el("span", { text: s.sweep_id }), " ", el("span", { class: "status", "data-status": s.status }, badge(words(s.status), `s-${s.status}`)));
  $("#sw-facts").replaceChildren(
    ...fact("System", s.system),
    ...fact("Started by", s.requested_by || SWEEP_TRIGGERS[s.trigger] || words(s.trigger)),
    ...fact("Requested", when(s.requested_at)),
    ...fact("Approved", s.approved_by ? `${when(s.approved_at)} by ${s.approved_by}` : "—"),
    ...fact("Finished", when(s.finished_at)),
    ...fact("Records", `${s.expired} expired, ${s.deleted} deleted, ${s.anonymised} anonymised, ${s.kept} kept`),
    ...(s.reason ? fact("Reason", s.reason) : []),
  );
  renderSweepStep(s);
  const files = $("#sw-files");
  files.replaceChildren(
    ...(s.files.length
      ? [el("h2", { text: "Certificate" }), el("ul", {}, s.files.map((f) => el("li", {}, el("a", { href: f.href, download: f.filename, "data-file": f.name, text: f.title }))))]
      : [el("p", { class: "muted", text: "The signed sweep certificate appears here once the sweep has deleted." })]),
  );
  $("#sw-collections tbody").replaceChildren(
    ...s.collections.map((c) =>
      el(
        "tr",
        { "data-collection": c.collection },
        el("td", { text: c.collection }),
        el("td", { class: "rule", text: c.rule || "—" }),
        el("td", { text: c.cutoff || "—" }),
        el("td", { class: "num expired", text: count(c.expired) }),
        el("td", { class: "num deleted", text: count(c.deleted) }),
        el("td", { class: "num anonymised", text: count(c.anonymised) }),
        el("td", { class: "num kept", text: count(c.kept) }),
      ),
    ),
  );
  $("#sw-retained").replaceChildren(
    ...(s.retained.length
      ? [
          el("h2", { text: "Kept under a retention duty" }),
          el(
            "table",
            { class: "retained timeline" },
            el("thead", {}, el("tr", {}, ["Collection", "Count", "Legal basis", "Until", "Why"].map((h) => el("th", { text: h })))),
            el("tbody", {}, s.retained.map((item) => el("tr", {}, el("td", { text: item.collection }), el("td", { class: "num", text: String(item.count) }), el("td", { text: item.legal_basis }), el("td", { text: item.until || "—" }), el("td", { text: item.reason || "" })))),
          ),
        ]
      : []),
  );
  $("#sw-instructions").replaceChildren(
    ...(s.instructions ? [el("div", { class: "instructions" }, el("strong", { text: "What a person must do" }), el("p", { text: s.instructions }))] : []),
  );
  $("#sw-timeline tbody").replaceChildren(
    ...s.timeline.map((e) =>
      el(
        "tr",
        { "data-sequence": e.sequence },
        el("td", { class: "num", text: String(e.sequence) }),
        el("td", { text: when(e.changed_at) }),
        el("td", { text: e.previous_status && e.previous_status !== e.status ? `${words(e.previous_status)} → ${words(e.status)}` : words(e.status) }),
        el("td", { text: e.reason || "" }),
      ),
    ),
  );
}

function renderSweepStep(s) {
  const next = $("#sw-next .next");
  next.textContent = s.next_step;
  next.dataset.step = s.actions.length ? "approve" : s.status === "failed" ? "overdue" : "none";
  const box = $("#sw-next .actions");
  const key = JSON.stringify(s.actions);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...s.actions.map(() => approveForm(s)));
}

function approveForm(s) {
  const message = el("p", { class: "result", role: "status" });
  const title = "Approve the deletion";
  const form = el(
    "form",
    { class: "decision", "data-action": "approve-sweep" },
    el("h3", { text: title }),
    el("p", { class: "muted", text: `Deletes the ${s.expired} expired records the dry run counted, keeping what a retention duty covers.` }),
    el("button", { type: "submit", text: title }),
    message,
  );
  postOnSubmit(form, message, `/api/sweeps/${encodeURIComponent(s.sweep_id)}/approval`, () => ({}));
  return form;
}

function startSweep(id) {
  sweepState.id = id;
  $("#sweep-view").hidden = false;
  const soon = debounced(loadSweep);
  follow(() => {}, loadSweep, (s) => {
    if (s.sweep_id === sweepState.id) soon();
  });
}
