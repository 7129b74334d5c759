// Search page: a file (input, drop or paste) or ?item=ID -> one column of hits per depth.
import { apiUrl, call, el, renderHits, toast } from "./common.js";

const results = document.getElementById("results");
const status = document.getElementById("status");
const filters = document.getElementById("filters");
const preview = document.getElementById("query-preview");
const tags = document.getElementById("tags");

function query() {
  const form = new FormData(filters);
  const params = new URLSearchParams();
  params.set("k", form.get("k") || "12");
  if (form.get("labels")) params.set("labels", form.get("labels"));
  for (const pair of String(form.get("meta") || "").split(",")) {
    if (pair.trim()) params.append("meta", pair.trim());
  }
  return params;
}

let last = null; // how to rerun the last query when filters change
let runs = 0; // only the latest search shows its answer

function clearResults() {
  renderHits(results, []);
  tags.replaceChildren();
}

async function run(request, label) {
  // A new query's page shows none of the previous query's hits (a rerun with other filters
  // keeps them until its answer comes).
  if (!last || last.request !== request) clearResults();
  last = { request, label };
  const mine = ++runs;
  status.textContent = `searching ${label}…`;
  results.dataset.state = "searching";
  const began = performance.now();
  try {
    const answer = await request(query());
    if (mine !== runs) return;
    renderHits(results, answer.depths);
    tags.replaceChildren(
      ...(answer.tags.length ? [el("span", { class: "muted", text: "ImageNet tags: " })] : []),
      ...answer.tags.map((t) => el("span", { class: "pill", text: `${t.label} ${(100 * t.score).toFixed(0)}%` })),
    );
    const ms = performance.now() - began;
    status.textContent = `${label}: ${answer.depths.length} depths in ${ms.toFixed(0)} ms`;
    results.dataset.state = "done";
    results.dataset.ms = ms.toFixed(1);
  } catch (error) {
    if (mine !== runs) return;
    clearResults();
    status.textContent = error.message;
    results.dataset.state = "error";
    toast(error.message, "error");
  }
}

// The API calls a posted image "image 0" in its errors (it is sent without a name): say
// which file it was.
function naming(file, error) {
  const quoted = "'image 0'";
  if (error.message.includes(quoted)) error.message = error.message.replaceAll(quoted, `'${file.name}'`);
  else if (!error.message.includes(file.name)) error.message = `${file.name}: ${error.message}`;
  return error;
}

function searchFile(file) {
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  run(async (params) => {
    if (!file.size) throw new Error(`${file.name}: the file is empty (0 bytes)`);
    try {
      return await call(`${apiUrl("/search")}?${params}`, { method: "POST", body: file });
    } catch (error) {
      throw naming(file, error);
    }
  }, file.name);
}

function searchItem(id) {
  preview.src = apiUrl(`/thumbnails/${id}`);
  preview.hidden = false;
  run((params) => { params.set("item", id); return call(`${apiUrl("/search")}?${params}`); }, `item ${id}`);
}

document.getElementById("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchFile(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) searchFile(file);
});
filters.addEventListener("change", () => last && run(last.request, last.label));
filters.addEventListener("submit", (e) => { e.preventDefault(); last && run(last.request, last.label); });

if (results.dataset.item) searchItem(results.dataset.item);
