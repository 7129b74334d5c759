// Item page: neighbours per depth, where it lies on the map, relabel, delete.
import { apiUrl, call, pageUrl, renderHits, toast } from "./common.js";
import { loadProjection, Scatter, UNLABELLED } from "./scatter.js";

const root = document.getElementById("item");
const id = Number(root.dataset.id);
const results = document.getElementById("results");

call(`${apiUrl("/search")}?item=${id}&k=9`)
  .then((answer) => { renderHits(results, answer.depths); results.dataset.state = "done"; })
  .catch((error) => toast(error.message, "error"));

const canvas = document.getElementById("map");
const select = document.getElementById("map-depth");
let scatter = null;

async function showOnMap(depth) {
  document.getElementById("map-link").href = pageUrl(`/map?depth=${encodeURIComponent(depth)}`);
  scatter = scatter || new Scatter(canvas, { pointSize: 3 });
  const projection = await loadProjection(depth);
  scatter.resize();
  scatter.pointSize = projection.count < 2000 ? 7 : 3;
  scatter.setData(projection.ids, projection.xy);
  const rgb = new Uint8Array(3 * projection.count);
  for (let i = 0; i < rgb.length; i += 3) rgb.set(UNLABELLED, i);
  const me = scatter.indexOf.get(id);
  if (me !== undefined) rgb.set([220, 40, 40], 3 * me);
  scatter.setColours(rgb);
  scatter.setHighlight(me === undefined ? [] : [me]);
  scatter.draw();
  canvas.dataset.points = String(projection.count);
  canvas.dataset.found = String(me !== undefined);
}

canvas.addEventListener("click", (event) => {
  if (!scatter) return;
  const r = canvas.getBoundingClientRect();
  const i = scatter.pick(event.clientX - r.left, event.clientY - r.top);
  if (i >= 0) window.location = pageUrl(`/items/${scatter.ids[i]}`);
});
select.addEventListener("change", () => showOnMap(select.value).catch((e) => toast(e.message, "error")));
showOnMap(select.value).catch(() => {
  canvas.replaceWith(Object.assign(document.createElement("p"), { className: "muted", textContent: "No projection from this server yet." }));
});

document.getElementById("relabel").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = new FormData(event.target).get("label").trim();
  try {
    await call(apiUrl("/labels"), { method: "POST", json: { ids: [id], label } });
    window.location.reload();
  } catch (error) {
    toast(error.message, "error");
  }
});

document.getElementById("delete").addEventListener("click", async () => {
  if (!window.confirm(`Delete item ${id} from this collection?`)) return;
  try {
    await call(apiUrl("/delete"), { method: "POST", json: { ids: [id] } });
    window.location = pageUrl("/search");
  } catch (error) {
    toast(error.message, "error");
  }
});
