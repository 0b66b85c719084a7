// The review page over Clipline's JSON API. No framework, no build step; every text from the
// API goes in through textContent, never as HTML. The key lives in sessionStorage only.
"use strict";

const KEY = "clipline.key";
const PAGE = 500;          // jobs per GET /v1/jobs page
const MAX_JOBS = 2000;     // the grid shows at most this many jobs of a batch (sorted here)
const REFRESH_MS = 3000;   // batches, jobs and dead letters are polled while the tab is shown
const state = { batch: null, all: false, fetched: { jobs: [], more: false }, timer: null,
  busy: false, shown: "", detail: [] };
const thumbs = new Map();  // "<job id>/<finished_at>" -> blob URL of its small cut-out
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.status = status;
    this.code = problem.code;
  }
}

// One call to /v1 with the key; a 429 waits as told and tries again (twice at most).
async function api(path, options = {}, tries = 3) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...options.headers };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 429 && tries > 1) {
    const problem = await response.json().catch(() => ({}));
    await new Promise((done) => setTimeout(done, 1000 * (problem.retry_after || 1)));
    return api(path, options, tries - 1);
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ title: response.statusText }));
    if (response.status === 401) logout(problem.title || "The API key is not valid");
    throw new ApiError(response.status, problem);
  }
  return options.raw ? response : response.json();
}

function showProblem(error) {
  const box = $("problem");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

// -- log in and out ------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  $("login-error").textContent = "";
  try {
    await api("/v1/batches?limit=1");
  } catch (error) {
    if (error.status !== 401) $("login-error").textContent = error.message;
    return;
  }
  open();
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  clearInterval(state.timer);
  for (const url of thumbs.values()) URL.revokeObjectURL(url);
  thumbs.clear();
  $("review").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = typeof why === "string" ? why : "";
}

function open() {
  $("login").hidden = true;
  $("review").hidden = false;
  $("logout").hidden = false;
  refresh();
  state.timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    await loadBatches();
    await Promise.all([loadJobs(), loadDead()]);
    showProblem(null);
  } catch (error) {
    if (error.status !== 401) showProblem(error);
  } finally {
    state.busy = false;
  }
}

// -- batches -------------------------------------------------------------------------------

const FINISHED = ["succeeded", "dead", "cancelled"];

function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const minutes = Math.max(0, Math.round((at - Date.now()) / 60000));
  return `${at.toLocaleTimeString()} (in ${minutes} min)`;
}

function batchRow(batch) {
  const counts = batch.counts;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = FINISHED.reduce((sum, s) => sum + (counts[s] || 0), 0);
  const waiting = (counts.queued || 0) + (counts.running || 0);
  const bar = el("progress", { max: String(Math.max(total, 1)), value: String(done) });
  const pick = el("button", { type: "button", text: "Review" });
  pick.addEventListener("click", () => select(batch.id, false));
  const row = el("tr", { "data-batch": batch.id },
    el("td", {}, el("div", { text: batch.label || "(no label)" }),
      el("div", { class: "mono muted", text: batch.id })),
    el("td", { text: batch.state }),
    el("td", {}, bar, el("span", { class: "muted", text: ` ${done} of ${total}` })),
    el("td", { text: String(counts.succeeded || 0) }),
    el("td", { text: String(counts.dead || 0) }),
    el("td", { text: String(waiting) }),
    el("td", { text: batch.throughput_per_minute.toFixed(1) }),
    el("td", { text: waiting ? when(batch.estimated_finish) : "done" }),
    el("td", {}, pick));
  if (batch.id === state.batch && !state.all) row.className = "selected";
  return row;
}

async function loadBatches() {
  const { items } = await api("/v1/batches?limit=20");
  if (!state.batch && !state.all) {
    if (items.length) state.batch = items[0].id;
    else state.all = true;
  }
  $("batch-rows").replaceChildren(...items.map(batchRow));
  const chosen = items.find((b) => b.id === state.batch);
  $("cutouts-title").textContent = state.all ? "Cut-outs: all jobs"
    : `Cut-outs: ${chosen ? chosen.label || chosen.id : state.batch}`;
  $("no-batches").hidden = items.length > 0;
}

function select(batchId, all) {
  state.batch = batchId;
  state.all = all;
  state.shown = "";
  refresh();
}

function scope() {
  return state.all || !state.batch ? "" : `&batch=${encodeURIComponent(state.batch)}`;
}

// -- the grid of cut-outs ------------------------------------------------------------------

async function fetchJobs() {
  const status = $("status-filter").value;
  let jobs = [];
  let cursor = null;
  do {
    const query = `limit=${PAGE}${scope()}${status ? `&status=${status}` : ""}` +
      (cursor ? `&after=${encodeURIComponent(cursor)}` : "");
    const page = await api(`/v1/jobs?${query}`);
    jobs = jobs.concat(page.items);
    cursor = page.next_cursor;
  } while (cursor && jobs.length < MAX_JOBS);
  return { jobs, more: Boolean(cursor) };
}

const uncertainty = (job) => (job.result && typeof job.result.uncertainty === "number"
  ? job.result.uncertainty : null);

// The API lists jobs in submission order: sorting by uncertainty happens here, over the jobs
// fetched (at most MAX_JOBS). Jobs without an uncertainty (not finished) come last.
function sorted(jobs) {
  const order = $("sort").value;
  if (order === "submitted") return jobs;
  const sign = order === "uncertainty-desc" ? -1 : 1;
  return [...jobs].sort((a, b) => {
    const ua = uncertainty(a);
    const ub = uncertainty(b);
    if (ua === null || ub === null) return (ua === null) - (ub === null);
    return sign * (ua - ub);
  });
}

async function loadJobs() {
  state.fetched = await fetchJobs();
  render();
}

function render() {
  const { jobs, more } = state.fetched;
  const shown = sorted(jobs);
  const signature = JSON.stringify(shown.map((j) => [j.id, j.status, j.finished_at])) + more;
  const where = state.all ? "all jobs" : "this batch";
  $("grid-count").textContent = `${jobs.length}${more ? "+" : ""} jobs in ${where}` +
    (more ? ` (the first ${jobs.length} are sorted)` : "");
  if (signature === state.shown) return;
  state.shown = signature;
  $("grid").replaceChildren(...shown.map(tile));
}

function name(job) {
  return job.source.key.split("/").pop() || job.source.key;
}

function tile(job) {
  const u = uncertainty(job);
  const frame = el("div", { class: "frame checker" });
  if (job.status === "succeeded") {
    thumbnail(job, frame);
  } else {
    frame.append(el("span", { class: "placeholder", text: job.error || job.status }));
  }
  const open_ = el("button", { type: "button", title: `${job.source.bucket}/${job.source.key}` },
    frame,
    el("span", { class: "caption" },
      el("span", { class: "name", text: name(job) }),
      el("span", { class: "line" },
        el("span", { class: `status ${job.status}`, text: job.status }),
        el("span", { class: "uncertainty muted", title: "uncertainty",
          text: u === null ? "" : `u ${u.toFixed(3)}` }))));
  open_.addEventListener("click", () => showJob(job.id));
  return el("li", { class: "tile", "data-job": job.id, "data-status": job.status,
    "data-uncertainty": u === null ? "" : String(u) }, open_);
}

// Images need the key too, so they are fetched and shown from blob URLs (cached per job and
// finish time; a job redriven and finished again gets a new thumbnail).
async function preview(jobId, kind, size) {
  const response = await api(`/v1/jobs/${jobId}/preview/${kind}?size=${size}`, { raw: true });
  return URL.createObjectURL(await response.blob());
}

// Thumbnails load as their tiles scroll into view, a few at a time (the key has a rate limit).
const queue = { waiting: [], running: 0, limit: 4 };
const seen = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    seen.unobserve(entry.target);
    queue.waiting.push(entry.target.load);
  }
  pump();
});

function pump() {
  while (queue.running < queue.limit && queue.waiting.length) {
    const load = queue.waiting.shift();
    queue.running += 1;
    load().finally(() => { queue.running -= 1; pump(); });
  }
}

function thumbnail(job, frame) {
  const id = `${job.id}/${job.finished_at}`;
  const show = () => frame.replaceChildren(
    el("img", { src: thumbs.get(id), alt: `cut-out of ${name(job)}` }));
  if (thumbs.has(id)) return show();
  frame.load = async () => {
    try {
      if (!thumbs.has(id)) thumbs.set(id, await preview(job.id, "cutout", "small"));
      show();
    } catch (error) {
      frame.replaceChildren(el("span", { class: "placeholder", text: error.code || "no preview" }));
    }
  };
  seen.observe(frame);
}

// -- dead letters --------------------------------------------------------------------------

async function loadDead() {
  const { items } = await api(`/v1/dead-letters?limit=1000${scope()}`);
  const groups = new Map();
  for (const job of items) {
    if (!groups.has(job.error)) groups.set(job.error, []);
    groups.get(job.error).push(job);
  }
  $("dead-none").hidden = items.length > 0;
  $("dead-groups").replaceChildren(...[...groups].map(([reason, jobs]) => deadGroup(reason, jobs)));
}

function deadGroup(reason, jobs) {
  const button = el("button", { type: "button", class: "primary", text: `Redrive ${jobs.length}`,
    title: "Send these jobs back to the queue with fresh attempts" });
  button.addEventListener("click", () => redrive(reason, button));
  const list = el("ul", {}, ...jobs.slice(0, 20).map((job) => {
    const item = el("li", { "data-job": job.id },
      el("span", { class: "mono", text: name(job) }), el("br"),
      el("span", { class: "muted", text: job.message || "" }));
    item.addEventListener("click", () => showJob(job.id));
    return item;
  }));
  if (jobs.length > 20) list.append(el("li", { class: "muted", text: `and ${jobs.length - 20} more` }));
  return el("div", { class: "group", "data-reason": reason },
    el("h3", {}, el("span", {}, el("span", { class: "mono", text: reason }),
      el("span", { class: "muted", text: ` × ${jobs.length}` })), button), list);
}

async function redrive(reason, button) {
  button.disabled = true;
  const body = { reason, ...(state.all || !state.batch ? {} : { batch_id: state.batch }) };
  try {
    const { redriven } = await api("/v1/dead-letters/redrive", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    button.textContent = `Redriven ${redriven}`;
    await refresh();
  } catch (error) {
    showProblem(error);
    button.disabled = false;
  }
}

// -- one job -------------------------------------------------------------------------------

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: term }), el("dd", { text: String(value) }));
}

async function showJob(jobId) {
  let job;
  try {
    job = await api(`/v1/jobs/${jobId}`);
  } catch (error) {
    showProblem(error);
    return;
  }
  const r = job.result || {};
  $("detail-title").textContent = name(job);
  const facts = el("dl", { id: "detail-facts" });
  fact(facts, "Status", `${job.status} (attempt ${job.attempts} of ${job.max_attempts})`);
  fact(facts, "Source", `s3://${job.source.bucket}/${job.source.key}`);
  fact(facts, "Cut-out", job.output ? `s3://${job.output.bucket}/${job.output.key}` : null);
  fact(facts, "Reason", job.error ? `${job.error}: ${job.message || ""}` : null);
  fact(facts, "Uncertainty", r.uncertainty);
  fact(facts, "Foreground", r.foreground_fraction);
  fact(facts, "Subject box", r.bbox ? r.bbox.join(", ") : null);
  fact(facts, "Model", job.model);
  fact(facts, "Options", JSON.stringify(job.options));
  fact(facts, "Job id", job.id);
  fact(facts, "Finished", job.finished_at);
  $("detail-facts").replaceWith(facts);
  $("detail-json").textContent = JSON.stringify(job, null, 2);
  for (const url of state.detail.splice(0)) URL.revokeObjectURL(url);
  for (const kind of ["source", "cutout", "mask"]) {
    const img = $(`detail-${kind}`);
    img.removeAttribute("src");
    img.alt = kind === "source" || job.status === "succeeded" ? "loading" : `no ${kind} (${job.status})`;
    if (kind !== "source" && job.status !== "succeeded") continue;
    preview(job.id, kind, "large").then((url) => {
      state.detail.push(url);
      img.src = url;
      img.alt = kind;
    },
      (error) => { img.alt = `${kind}: ${error.message}`; });
  }
  if (!$("detail").open) $("detail").showModal();
}

// -- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  $("all-jobs").addEventListener("click", () => select(null, true));
  $("status-filter").addEventListener("change", () => { state.shown = ""; refresh(); });
  $("sort").addEventListener("change", render);
  $("detail-close").addEventListener("click", () => $("detail").close());
  if (sessionStorage.getItem(KEY)) open();
});
