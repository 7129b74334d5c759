// Map page: projection (binary, fetched once per depth) + labels (one compact JSON), WebGL
// scatter, legend for any number of classes, hover thumbnails, click -> item, box/lasso
// selection -> label it or export it as CSV.
import { apiUrl, call, collection, el, pageUrl, thumbUrl, toast } from "./common.js";
import { loadProjection, palette, ramp, Scatter, UNLABELLED } from "./scatter.js";

const canvas = document.getElementById("map");
const overlay = document.getElementById("overlay");
const hover = document.getElementById("hover");
const status = document.getElementById("map-status");
const legend = document.getElementById("legend");
const colourSelect = document.getElementById("colour");
const scatter = new Scatter(canvas);
const state = { labels: null, position: null, selected: [], mode: "pan", colours: [] };

function sizeOverlay() {
  overlay.width = canvas.clientWidth;
  overlay.height = canvas.clientHeight;
}

// Class index per point for the current colour mode (-1 = none), and the confidence.
function classOf(i, mode) {
  const p = state.position.get(scatter.ids[i]);
  if (p === undefined) return -1;
  return mode === "predicted" ? state.labels.predicted[p] : state.labels.human[p];
}

function confidenceOf(i) {
  const p = state.position.get(scatter.ids[i]);
  return p === undefined ? -1 : state.labels.confidence[p];
}

function recolour() {
  const mode = colourSelect.value;
  const n = scatter.count;
  const rgb = new Uint8Array(3 * n);
  state.colours = palette(state.labels.classes.length);
  const counts = new Map();
  for (let i = 0; i < n; i++) {
    let c = UNLABELLED;
    if (mode === "confidence") {
      const v = confidenceOf(i);
      if (v >= 0) c = ramp(v);
    } else {
      const k = classOf(i, mode);
      counts.set(k, (counts.get(k) || 0) + 1);
      if (k >= 0) c = state.colours[k];
    }
    rgb[3 * i] = c[0];
    rgb[3 * i + 1] = c[1];
    rgb[3 * i + 2] = c[2];
  }
  scatter.setColours(rgb);
  renderLegend(mode, counts);
  scatter.draw();
}

function swatch(rgb) {
  const box = el("span", { class: "swatch" });
  box.style.background = `rgb(${rgb.join(",")})`;
  return box;
}

function renderLegend(mode, counts) {
  if (mode === "confidence") {
    legend.replaceChildren(
      ...[0, 0.25, 0.5, 0.75, 1].map((t) => el("li", {}, swatch(ramp(t)), `${t.toFixed(2)}`)),
      el("li", {}, swatch(UNLABELLED), "no prediction"),
    );
    return;
  }
  const entries = state.labels.classes
    .map((name, k) => ({ name, k, count: counts.get(k) || 0 }))
    .filter((e) => e.count > 0)
    .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name));
  legend.replaceChildren(
    ...entries.map((e) =>
      el("li", { "data-class": e.name, title: "click: select this class", onclick: () => selectClass(e.k) },
        swatch(state.colours[e.k]), e.name, el("span", { class: "muted", text: ` ${e.count}` }))),
    // "none" only when some point has no label (as classes with no point are left out).
    ...(counts.get(-1)
      ? [el("li", { "data-class": "" }, swatch(UNLABELLED), "none", el("span", { class: "muted", text: ` ${counts.get(-1)}` }))]
      : []),
  );
  filterLegend();
}

function filterLegend() {
  const needle = document.getElementById("legend-filter").value.toLowerCase();
  for (const li of legend.children) li.hidden = !!needle && !li.textContent.toLowerCase().includes(needle);
}

function selectClass(k) {
  const mode = colourSelect.value;
  const picked = [];
  for (let i = 0; i < scatter.count; i++) if (classOf(i, mode) === k) picked.push(i);
  setSelection(picked);
}

function setSelection(indices) {
  state.selected = indices;
  scatter.setHighlight(indices);
  scatter.draw();
  document.getElementById("selected-count").textContent = String(indices.length);
  canvas.dataset.selected = String(indices.length);
}

async function load(depth) {
  const began = performance.now();
  status.textContent = `loading ${depth}…`;
  delete canvas.dataset.points;
  const [projection, labels] = await Promise.all([
    loadProjection(depth),
    call(apiUrl("/labels")),
  ]);
  state.labels = labels;
  state.position = new Map(labels.ids.map((id, p) => [id, p]));
  scatter.resize();
  sizeOverlay();
  scatter.pointSize = projection.count < 2000 ? 9 : projection.count < 20000 ? 5 : 3;
  scatter.setData(projection.ids, projection.xy);
  setSelection([]);
  recolour();
  const ms = performance.now() - began;
  canvas.dataset.points = String(projection.count);
  canvas.dataset.loadMs = ms.toFixed(1);
  status.textContent = `${projection.count} points · ${depth} · ${(projection.bytes / 1024).toFixed(0)} KiB · ${ms.toFixed(0)} ms`;
}

// -- interaction ----------------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  for (const name of ["pan", "box", "lasso"]) {
    document.getElementById(`mode-${name}`).classList.toggle("on", name === mode);
  }
  canvas.parentElement.dataset.mode = mode;
}

const ctx = overlay.getContext("2d");
let drag = null;

function local(event) {
  const r = canvas.getBoundingClientRect();
  return [event.clientX - r.left, event.clientY - r.top];
}

function drawOverlay() {
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!drag || drag.kind === "pan") return;
  ctx.strokeStyle = "#d33";
  ctx.fillStyle = "rgba(220,50,50,0.08)";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  if (drag.kind === "box") {
    const [x0, y0] = drag.start;
    const [x1, y1] = drag.last;
    ctx.rect(x0, y0, x1 - x0, y1 - y0);
  } else {
    drag.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
  }
  ctx.fill();
  ctx.stroke();
}

overlay.addEventListener("mousedown", (event) => {
  const at = local(event);
  const kind = event.shiftKey ? "box" : state.mode;
  drag = { kind, start: at, last: at, points: [at], moved: 0 };
  hover.hidden = true;
});

window.addEventListener("mousemove", (event) => {
  const at = local(event);
  if (drag) {
    drag.moved += Math.hypot(at[0] - drag.last[0], at[1] - drag.last[1]);
    if (drag.kind === "pan") {
      scatter.panBy(at[0] - drag.last[0], at[1] - drag.last[1]);
      scatter.draw();
    } else if (drag.kind === "lasso") {
      drag.points.push(at);
    }
    drag.last = at;
    drawOverlay();
    return;
  }
  if (event.target !== overlay || !scatter.count) return;
  const i = scatter.pick(at[0], at[1]);
  if (i < 0) { hover.hidden = true; return; }
  const id = scatter.ids[i];
  const image = hover.querySelector("img");
  if (image.dataset.id !== String(id)) {
    image.dataset.id = String(id);
    image.src = thumbUrl(id);
  }
  const k = classOf(i, colourSelect.value === "predicted" ? "predicted" : "human");
  hover.querySelector("span").textContent = `#${id}${k >= 0 ? ` · ${state.labels.classes[k]}` : ""}`;
  hover.style.left = `${at[0] + 14}px`;
  hover.style.top = `${at[1] + 14}px`;
  hover.hidden = false;
});

window.addEventListener("mouseup", (event) => {
  if (!drag) return;
  const done = drag;
  drag = null;
  drawOverlay();
  const at = local(event);
  if (done.moved < 4) {
    const i = scatter.pick(at[0], at[1]);
    if (i >= 0) window.location = pageUrl(`/items/${scatter.ids[i]}`);
    return;
  }
  if (done.kind === "box") setSelection(scatter.inBox(done.start[0], done.start[1], at[0], at[1]));
  else if (done.kind === "lasso" && done.points.length > 2) setSelection(scatter.inPolygon(done.points));
});

overlay.addEventListener("wheel", (event) => {
  event.preventDefault();
  const [px, py] = local(event);
  scatter.zoomAt(px, py, Math.exp(-event.deltaY / 400));
  scatter.draw();
}, { passive: false });

window.addEventListener("resize", () => { scatter.resize(); sizeOverlay(); scatter.draw(); });

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.toLowerCase();
  if (key === "p") setMode("pan");
  else if (key === "b") setMode("box");
  else if (key === "l") setMode("lasso");
  else if (key === "escape") setSelection([]);
});

for (const name of ["pan", "box", "lasso"]) {
  document.getElementById(`mode-${name}`).addEventListener("click", () => setMode(name));
}
colourSelect.addEventListener("change", recolour);
document.getElementById("legend-filter").addEventListener("input", filterLegend);
document.getElementById("clear-selection").addEventListener("click", () => setSelection([]));
document.getElementById("depth").addEventListener("change", (event) => {
  const url = new URL(window.location);
  url.searchParams.set("depth", event.target.value);
  history.replaceState(null, "", url);
  canvas.dataset.depth = event.target.value;
  load(event.target.value).catch((e) => toast(e.message, "error"));
});

document.getElementById("label-selection").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = document.getElementById("selection-label").value.trim();
  const ids = state.selected.map((i) => scatter.ids[i]);
  if (!ids.length || !label) return;
  try {
    await call(apiUrl("/labels"), { method: "POST", json: { ids, label } });
    let k = state.labels.classes.indexOf(label);
    if (k < 0) { state.labels.classes.push(label); k = state.labels.classes.length - 1; }
    for (const id of ids) {
      let p = state.position.get(id);
      if (p === undefined) {
        p = state.labels.ids.length;
        state.labels.ids.push(id);
        state.labels.human.push(-1);
        state.labels.predicted.push(-1);
        state.labels.confidence.push(-1);
        state.position.set(id, p);
      }
      state.labels.human[p] = k;
    }
    recolour();
    canvas.dataset.labelled = String(ids.length);
    toast(`labelled ${ids.length} item(s) “${label}”`);
  } catch (error) {
    toast(error.message, "error");
  }
});

// A text cell of the CSV, quoted. Text that a spreadsheet would run as a formula (= + - @,
// tab, CR first) gets a leading ' (OWASP's CSV injection advice); numbers are not text cells.
function csvText(text) {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replaceAll('"', '""')}"`;
}

document.getElementById("export-csv").addEventListener("click", () => {
  const name = (k) => (k >= 0 ? csvText(state.labels.classes[k]) : "");
  const rows = ["id,x,y,label,predicted,confidence"];
  for (const i of state.selected) {
    const p = state.position.get(scatter.ids[i]);
    const conf = p === undefined ? "" : state.labels.confidence[p];
    rows.push([scatter.ids[i], scatter.xy[2 * i], scatter.xy[2 * i + 1],
      name(classOf(i, "human")), name(classOf(i, "predicted")), conf < 0 ? "" : conf].join(","));
  }
  const link = el("a", {
    href: URL.createObjectURL(new Blob([rows.join("\n") + "\n"], { type: "text/csv" })),
    download: `${collection}-${canvas.dataset.depth}-selection.csv`,
  });
  document.body.append(link);
  link.click();
  link.remove();
});

window.strataMap = { scatter, setSelection, load, state };
load(canvas.dataset.depth).catch((e) => { status.textContent = ""; toast(e.message, "error"); });
