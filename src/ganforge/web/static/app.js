// ganforge web app: plain JavaScript, no build step. The pages are described by the server
// (GET /api/pages: fields and tasks); this file draws any of them, plus the Runs page.
"use strict";

const state = { pages: [], runs: [], models: [], timer: null, view: null, limits: {} };  // models: the built-in models' cards
const BUILTIN = "builtin:";  // a run picker's value for a built-in model: builtin:NAME

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;  // through the CSSOM: the CSP allows no style attributes
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function showError(box, message) {
  box.replaceChildren(el("div", { class: "error", role: "alert", text: message }));
}

// ---- navigation ---------------------------------------------------------------------------------

async function start() {
  const info = await getJSON("/api/pages");
  state.pages = info.pages; state.limits = info.limits || {};
  document.getElementById("runs-dir").textContent = info.runs_dir;
  const nav = document.getElementById("nav");
  nav.append(el("a", { href: "#runs", "data-page": "runs", text: "Runs" }));
  for (const p of state.pages) nav.append(el("a", { href: "#" + p.name, "data-page": p.name, text: p.title }));
  window.addEventListener("hashchange", route);
  route();
}

function route() {
  const name = (location.hash || "#runs").slice(1);
  if (state.timer) { clearTimeout(state.timer); state.timer = null; }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  const page = state.pages.find(p => p.name === name);
  state.view = name;
  if (page) showPage(page); else showRuns();
}

// ---- the Runs page --------------------------------------------------------------------------------

const fmt = v => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v));

function curveCharts(curves) {
  // the losses on one chart, each evaluation metric (fid, val_*) on its own scale
  const losses = {}, charts = [];
  for (const [k, pts] of Object.entries(curves)) if (k.startsWith("loss")) losses[k] = pts;
  if (Object.keys(losses).length) charts.push(curvesSVG(losses, 150));
  for (const [k, pts] of Object.entries(curves)) if (!k.startsWith("loss")) charts.push(curvesSVG({ [k]: pts }, 80));
  const shown = charts.filter(c => c.tagName.toLowerCase() === "svg");
  return shown.length ? el("div", { class: "charts" }, shown) : el("p", { class: "muted", text: "no curves yet" });
}

function curvesSVG(curves, H) {
  const names = Object.keys(curves).filter(k => curves[k].length > 1);
  if (!names.length) return el("span");
  const W = 370, P = 24, colours = ["#2f5bd3", "#d9480f", "#2b8a3e", "#862e9c", "#e8590c", "#0b7285"];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "curves"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  let xs = [], ys = [];
  for (const n of names) for (const [x, y] of curves[n]) { xs.push(x); ys.push(y); }
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = x => P + (W - 2 * P) * (x - x0) / ((x1 - x0) || 1);
  const sy = y => H - P + (-(H - 2 * P)) * (y - y0) / ((y1 - y0) || 1);
  names.forEach((n, i) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("points", curves[n].map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
    path.setAttribute("fill", "none"); path.setAttribute("stroke", colours[i % colours.length]); path.setAttribute("stroke-width", "1.3");
    svg.append(path);
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", P + 4 + i * 90); t.setAttribute("y", 12); t.setAttribute("fill", colours[i % colours.length]);
    t.textContent = n; svg.append(t);
  });
  for (const [v, y] of [[y1, P], [y0, H - P]]) {
    const t = document.createElementNS(ns, "text"); t.setAttribute("x", 2); t.setAttribute("y", y + 3); t.textContent = fmt(v); svg.append(t);
  }
  const t = document.createElementNS(ns, "text"); t.setAttribute("x", W - P - 60); t.setAttribute("y", H - 6); t.textContent = `step ${fmt(x1)}`; svg.append(t);
  return svg;
}

function runCard(r) {
  if (r.error) return el("div", { class: "card run", "data-run": r.name }, el("h2", { text: r.name }), el("div", { class: "error", text: r.error }));
  const pct = r.progress === null || r.progress === undefined ? null : Math.round(100 * r.progress);
  const rows = [["task", r.task], ["dataset", r.dataset], ["model", r.model], ["step", r.step], ["kimg", r.kimg], ["checkpoints", r.checkpoints]];
  const metrics = Object.assign({}, r.last_eval || {});
  for (const k of ["step", "kimg", "epoch", "time_s"]) delete metrics[k];
  const table = el("table", {}, rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) =>
    el("tr", {}, el("td", { class: "muted", text: k }), el("td", { text: fmt(v) }))));
  const mt = el("table", { class: "metrics" }, Object.entries(metrics).filter(([, v]) => typeof v === "number").slice(0, 8).map(([k, v]) =>
    el("tr", {}, el("td", { class: "muted", text: k }), el("td", { text: fmt(v) }))));
  return el("div", { class: "card run", "data-run": r.name, "data-task": r.task },
    el("div", {},
      el("h2", { text: r.name }),
      el("span", { class: "badge", text: r.task }), r.live ? el("span", { class: "badge live", text: "training" }) : null,
      pct === null ? null : el("div", { class: "bar", title: `${pct}%` }, el("div", { style: `width:${pct}%` })),
      pct === null ? null : el("div", { class: "muted progress", text: `${pct}% of the budget` }),
      table, Object.keys(metrics).length ? el("div", { class: "muted", text: "last evaluation" }) : null, mt),
    el("div", {}, r.samples ? el("img", { class: "grid", src: r.samples, alt: `latest samples of ${r.name}` }) : el("p", { class: "muted", text: "no samples yet" })),
    el("div", {}, curveCharts(r.curves || {})));
}

function modelCard(m) {
  // a built-in model, from its model card: shown, never changed (it ships inside the package)
  if (m.error) return el("div", { class: "card model", "data-model": m.name }, el("h2", { text: m.name }), el("div", { class: "error", text: m.error }));
  const rows = [["input → output", m.input || m.output ? `${m.input || "?"} → ${m.output || "?"}` : ""], ["measured", m.headline],
    ["training data", m.data], ["size", m.size_mb === undefined ? "" : `${m.size_mb} MB`], ["use it as", m.value]];
  return el("div", { class: "card model", "data-model": m.name, "data-task": m.task },
    el("div", {}, el("h2", { text: m.name }), el("span", { class: "badge", text: m.task }), el("span", { class: "badge builtin", text: "built-in" })),
    el("div", {}, m.summary ? el("p", { class: "summary", text: m.summary }) : null,
      el("table", {}, rows.filter(([, v]) => v).map(([k, v]) => el("tr", { "data-row": k }, el("td", { class: "muted", text: k }), el("td", { text: v }))))));
}

async function showRuns() {
  const main = document.getElementById("main");
  let data;
  try { data = await getJSON("/api/runs"); } catch (e) { showError(main, e.message); return; }
  if (state.view !== "runs" && location.hash && location.hash !== "#runs") return;
  state.runs = data.runs; state.models = data.builtin || [];
  const live = data.runs.some(r => r.live);
  const models = state.models.length ? [el("section", { class: "builtin" }, el("h1", { text: "Built-in models" }),
    el("p", { class: "muted", text: `${state.models.length} model(s) that ship with ganforge, offered on the pages beside your runs (read only)` }),
    ...state.models.map(modelCard))] : [];
  main.replaceChildren(
    el("h1", { text: "Runs" }),
    el("p", { class: "muted", text: `${data.runs.length} run(s) in ${data.runs_dir}` + (live ? " — refreshing every 2 s while training" : "") }),
    ...(data.runs.length ? data.runs.slice().reverse().map(runCard)
      : [el("p", { text: "No runs yet: train one with 'ganforge train'" + (models.length ? ", or use a built-in model below." : ".") })]),
    ...models);
  state.timer = setTimeout(() => { if (state.view === "runs") showRuns(); }, live ? 2000 : 10000);
}

// ---- the form pages -----------------------------------------------------------------------------

function maskEditor(field, imageInput) {
  // An image canvas with a drawing overlay at the image's own resolution: the mask is exact per pixel.
  const wrap = el("div", { class: "mask-box", "data-mask": field.name });
  const base = el("canvas", { class: "base" }), overlay = el("canvas", { class: "overlay" });
  const brush = el("input", { type: "range", min: 1, max: 64, value: 3, name: field.name + "_brush" });
  const brushLabel = el("span", { text: "3" });
  const undo = [];
  const undoBtn = el("button", { type: "button", class: "plain", text: "Undo", disabled: true });
  const clearBtn = el("button", { type: "button", class: "plain", text: "Clear" });
  let drawing = false, last = null, scale = 1;
  const ctx = overlay.getContext("2d");
  wrap.append(el("div", { class: "stack" }, base, overlay),
    el("div", { class: "tools" }, el("label", {}, "brush ", brush, " ", brushLabel, " px"), el("div", {}, undoBtn, " ", clearBtn),
      el("span", { class: "help", text: field.help || "" })));
  wrap.hidden = true;
  brush.addEventListener("input", () => { brushLabel.textContent = brush.value; });
  function stamp(x, y) {
    const r = Number(brush.value) / 2;
    for (let dy = Math.floor(-r); dy <= Math.ceil(r); dy++)
      for (let dx = Math.floor(-r); dx <= Math.ceil(r); dx++)
        if (dx * dx + dy * dy <= r * r + 0.25) ctx.fillRect(Math.floor(x + dx), Math.floor(y + dy), 1, 1);
  }
  function at(ev) {
    const b = overlay.getBoundingClientRect();
    return [(ev.clientX - b.left) * overlay.width / b.width, (ev.clientY - b.top) * overlay.height / b.height];
  }
  function line(a, b) {
    const n = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) * 2));
    for (let i = 0; i <= n; i++) stamp(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n);
  }
  overlay.addEventListener("pointerdown", ev => {
    ev.preventDefault(); overlay.setPointerCapture(ev.pointerId);
    undo.push(ctx.getImageData(0, 0, overlay.width, overlay.height)); undoBtn.disabled = false;
    drawing = true; last = at(ev); line(last, last); wrap.dataset.drawn = "1";
  });
  overlay.addEventListener("pointermove", ev => { if (!drawing) return; const p = at(ev); line(last, p); last = p; });
  for (const t of ["pointerup", "pointercancel"]) overlay.addEventListener(t, () => { drawing = false; });
  undoBtn.addEventListener("click", () => {
    if (undo.length) ctx.putImageData(undo.pop(), 0, 0);
    undoBtn.disabled = !undo.length;
  });
  clearBtn.addEventListener("click", () => {
    undo.push(ctx.getImageData(0, 0, overlay.width, overlay.height)); undoBtn.disabled = false;
    ctx.clearRect(0, 0, overlay.width, overlay.height);
  });
  imageInput.addEventListener("change", () => {
    const f = imageInput.files[0];
    if (!f) { wrap.hidden = true; return; }
    const img = new Image();
    img.onload = () => {
      for (const c of [base, overlay]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
      scale = Math.max(1, Math.floor(320 / Math.max(img.naturalWidth, img.naturalHeight)));
      const w = Math.min(img.naturalWidth * scale, 640), h = Math.round(w * img.naturalHeight / img.naturalWidth);
      for (const c of [base, overlay]) { c.style.width = w + "px"; c.style.height = h + "px"; }
      base.getContext("2d").drawImage(img, 0, 0);
      ctx.fillStyle = "#ff2d2d"; undo.length = 0; undoBtn.disabled = true; delete wrap.dataset.drawn;
      wrap.hidden = false; wrap.dataset.ready = "1";
    };
    img.onerror = () => { wrap.hidden = true; };
    img.src = URL.createObjectURL(f);
  });
  wrap.toBlob = () => new Promise(resolve => {
    // white where drawn, black elsewhere, at the image's size
    const out = el("canvas"); out.width = overlay.width; out.height = overlay.height;
    const o = out.getContext("2d"); const src = ctx.getImageData(0, 0, overlay.width, overlay.height);
    const dst = o.createImageData(out.width, out.height);
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3] >= 128 ? 255 : 0;
      dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v; dst.data[i + 3] = 255;
    }
    o.putImageData(dst, 0, 0);
    out.toBlob(resolve, "image/png");
  });
  wrap.isEmpty = () => !wrap.dataset.drawn;
  return wrap;
}

function limitNote(f) {
  // what this server takes: a limited number's maximum, an upload's size
  const L = state.limits;
  if (f.limit && f.max !== undefined) return `at most ${f.max} here`;
  if (f.kind === "image" && L.max_bytes)
    return `at most ${+(L.max_bytes / 2 ** 20).toPrecision(3)} MB and ${+(L.max_pixels / 1e6).toPrecision(3)} megapixels`;
  return "";
}

function fieldInput(f, page) {
  const id = `f-${page.name}-${f.name}`;
  const note = limitNote(f), text = [f.help, note].filter(Boolean).join("; ");
  const help = text ? el("span", { class: "help", "data-limit": note || null, text }) : null;
  if (f.kind === "check")
    return el("label", { class: "check" }, el("input", { type: "checkbox", name: f.name, id, checked: !!f.default }), f.label || f.name, help);
  let input;
  if (f.kind === "run") {
    // the folder's runs of the page's tasks, newest first, then the built-in models of those tasks; without
    // such a run the page starts with its task's built-in model
    const runs = state.runs.filter(r => !r.error && page.tasks.includes(r.task)).reverse();
    const models = state.models.filter(m => !m.error && page.tasks.includes(m.task));
    const preset = runs.length ? runs[0].name : (models.find(m => m.name === page.default_model) || models[0] || {}).value;
    const options = runs.map(r => el("option", { value: r.name, text: `${r.name} (${r.task})`, selected: r.name === preset }));
    if (models.length) options.push(el("optgroup", { label: "built-in models" }, models.map(m =>
      el("option", { value: m.value, text: `${m.name} (built-in)`, title: m.summary || null, selected: m.value === preset }))));
    input = el("select", { name: f.name, id }, options.length ? options
      : el("option", { value: "", text: `no ${page.tasks.join(" / ")} runs in the folder` }));
  } else if (f.kind === "select") {
    input = el("select", { name: f.name, id }, (f.choices || []).map(c => el("option", { value: c, text: c, selected: c === f.default })));
  } else if (f.kind === "image") {
    input = el("input", { type: "file", name: f.name, id, accept: "image/*" });
  } else if (f.kind === "int" || f.kind === "float") {
    input = el("input", { type: "number", name: f.name, id, value: f.default ?? "", min: f.min, max: f.max,
      step: f.step ?? (f.kind === "int" ? 1 : "any"), placeholder: f.optional ? "none" : null });
  } else {
    input = el("input", { type: "text", name: f.name, id, value: f.default ?? "" });
  }
  return el("label", { class: f.kind === "image" ? "wide" : null, "data-field": f.name }, f.label || f.name, input, help);
}

function syncModelFields(form) {
  // a built-in model is a single checkpoint: no checkpoint to choose (a hidden field is not sent: "last")
  const run = form.elements["run"], ck = form.elements["checkpoint"];
  if (!run || !ck) return;
  const builtin = run.value.startsWith(BUILTIN);
  ck.closest("label").hidden = builtin;
  if (builtin) ck.value = "last";
}

async function fillRunOptions(page, form) {
  const run = form.elements["run"] && form.elements["run"].value;
  const deps = page.fields.filter(f => f.depends);
  if (!deps.length || !run) return;
  let opts = {};
  try { opts = (await getJSON(`/api/runs/${encodeURIComponent(run)}/options/${page.name}`)).options; }
  catch (e) { showError(form.querySelector(".status"), e.message); return; }
  for (const f of deps) {
    const choices = opts[f.name] || [];
    const sel = form.elements[f.name], was = sel.value;  // a choice made meanwhile stays when the run offers it
    sel.replaceChildren(...choices.map(c => el("option", { value: c, text: c, selected: String(c) === was })));
    sel.closest("label").hidden = choices.length === 0;
  }
  form.dataset.ready = "1";
}

function renderOutputs(box, outputs) {
  const groups = new Map();
  for (const o of outputs) { if (!groups.has(o.group || o.kind)) groups.set(o.group || o.kind, []); groups.get(o.group || o.kind).push(o); }
  box.replaceChildren();
  for (const [g, items] of groups) {
    const heading = items.some(o => o.kind !== "text") ? el("div", { class: "muted", text: g }) : null;
    const div = el("div", { class: "group", "data-group": g }, heading);
    for (const o of items) {
      if (o.kind === "image") {
        const zoom = Math.max(1, Math.floor(256 / Math.max(o.width, o.height)));
        div.append(el("figure", {}, el("img", { src: o.url, alt: o.name, "data-name": o.name, "data-width": o.width,
          "data-height": o.height, width: Math.min(o.width * zoom, 900), }),
          el("figcaption", { text: `${o.name} — ${o.width}×${o.height}` })));
      } else if (o.kind === "file") {
        div.classList.add("downloads"); div.append(el("a", { href: o.url, download: o.name, text: `download ${o.name}` }));
      } else {
        div.append(el("p", { class: "about", text: o.text }));
      }
    }
    box.append(div);
  }
}

async function pollJob(id, status, outputs, button) {
  const bar = el("div", { class: "bar indeterminate" }, el("div"));
  const line = el("div", { class: "muted", text: "queued" });
  const cancel = el("button", { type: "button", class: "plain cancel", text: "Cancel" });
  cancel.addEventListener("click", async () => {
    // the job stops at its next step (a queued one at once); the poll below shows it
    cancel.disabled = true; cancel.textContent = "Cancelling…";
    try {
      const r = await fetch(`/api/jobs/${id}/cancel`, { method: "POST" });
      if (!r.ok) { const b = await r.json().catch(() => ({})); showError(status, b.error || `error: ${r.status}`); }
    } catch (e) { showError(status, e.message); }
  });
  status.dataset.job = id;
  status.replaceChildren(bar, el("div", { class: "job-line" }, line, cancel));
  for (;;) {
    let j;
    try { j = await getJSON(`/api/jobs/${id}`); } catch (e) { showError(status, e.message); break; }
    if (j.total) { bar.classList.remove("indeterminate"); bar.firstChild.style.width = `${Math.round(100 * j.done / j.total)}%`; }
    line.textContent = `${j.cancelling ? "cancelling" : j.state}${j.message ? ": " + j.message : ""} — ${j.seconds.toFixed(1)} s`;
    if (j.state === "cancelled") {
      status.replaceChildren(el("div", { class: "muted cancelled", text: `cancelled after ${j.seconds.toFixed(1)} s` })); break;
    }
    if (j.state === "error") { showError(status, j.error); break; }
    if (j.state === "done") {
      status.replaceChildren(el("div", { class: "muted done", text: `done in ${j.seconds.toFixed(1)} s` }));
      renderOutputs(outputs, j.outputs); break;
    }
    await new Promise(r => setTimeout(r, 250));
  }
  button.disabled = false;
}

async function showPage(page) {
  const main = document.getElementById("main");
  try {
    const data = await getJSON("/api/runs");
    state.runs = data.runs; state.models = data.builtin || [];
  } catch (e) { showError(main, e.message); return; }
  const form = el("form", { class: "page", "data-page": page.name, novalidate: true });
  const masks = [];
  for (const f of page.fields) {
    if (f.kind === "mask") continue;
    form.append(fieldInput(f, page));
  }
  for (const f of page.fields.filter(f => f.kind === "mask")) {
    const m = maskEditor(f, form.elements[f.over]);
    masks.push([f, m]);
    form.append(el("div", { class: "wide" }, el("div", { text: f.label || f.name }), m));
  }
  const button = el("button", { type: "submit", text: page.title });
  const status = el("div", { class: "status wide" });
  const outputs = el("div", { class: "outputs wide" });
  form.append(el("div", { class: "wide" }, button), status, outputs);
  if (form.elements["run"]) form.elements["run"].addEventListener("change", () => { syncModelFields(form); fillRunOptions(page, form); });
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    status.replaceChildren(); delete status.dataset.job;  // before anything waits: the old result goes at once
    const data = new FormData();
    for (const f of page.fields) {
      if (f.kind === "mask") continue;
      const input = form.elements[f.name];
      if (f.kind === "check") data.append(f.name, input.checked ? "true" : "false");
      else if (f.kind === "image") { if (input.files[0]) data.append(f.name, input.files[0]); }
      else if (!input.closest("label").hidden) data.append(f.name, input.value);
    }
    for (const [f, m] of masks) if (!m.hidden && !m.isEmpty()) data.append(f.name, await m.toBlob(), "mask.png");
    button.disabled = true; outputs.replaceChildren();
    const r = await fetch(`/api/pages/${page.name}`, { method: "POST", body: data });
    let body = {};
    try { body = await r.json(); } catch (e) { body = { error: `error: ${r.status} ${r.statusText}` }; }
    if (!r.ok) { showError(status, body.error); button.disabled = false; return; }
    pollJob(body.job, status, outputs, button);
  });
  main.replaceChildren(el("h1", { text: page.title }), el("p", { class: "muted", text: page.summary }), el("div", { class: "card" }, form));
  syncModelFields(form);
  await fillRunOptions(page, form);
  form.dataset.ready = "1";
}

start().catch(e => showError(document.getElementById("main"), e.message));
