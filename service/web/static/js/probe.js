// Probe page: one Probe call per depth (so progress is real), then a bar chart of accuracy
// and macro-F1 per depth with the chance level marked (inline SVG), and the confusion
// matrix and per-class accuracy at the best depth.
import { apiUrl, call, el, toast } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const depths = [...document.querySelectorAll("#probe-depths li")].map((li) => li.textContent);
const progress = document.getElementById("probe-progress");
const status = document.getElementById("probe-status");
const chart = document.getElementById("probe-chart");
const best = document.getElementById("probe-best");

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(results) {
  const width = 120 + results.length * 150;
  const height = 300;
  const [left, top, bottom] = [50, 20, 50];
  const plotH = height - top - bottom;
  const y = (v) => top + plotH * (1 - v);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", id: "probe-svg",
    "aria-label": "probe accuracy and macro-F1 per depth" });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { x1: left, x2: width - 10, y1: y(t), y2: y(t), stroke: "#e3e3e3" }));
    root.append(svg("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", "font-size": 11, fill: "#555" }, t.toFixed(2)));
  }
  results.forEach((r, i) => {
    const x0 = left + 20 + i * 150;
    for (const [j, key, colour] of [[0, "accuracy", "#3b6fb6"], [1, "macro_f1", "#e08a2c"]]) {
      const v = r[key];
      const bar = svg("rect", { x: x0 + j * 52, y: y(v), width: 46, height: plotH * v, fill: colour,
        "data-depth": r.depth, "data-metric": key, "data-value": v.toFixed(4) });
      bar.append(svg("title", {}, `${r.depth} ${key} ${v.toFixed(3)}`));
      root.append(bar);
      root.append(svg("text", { x: x0 + j * 52 + 23, y: y(v) - 4, "text-anchor": "middle", "font-size": 11 }, v.toFixed(2)));
    }
    root.append(svg("text", { x: x0 + 49, y: height - bottom + 18, "text-anchor": "middle", "font-size": 13 }, r.depth));
    // Chance: always answering the most frequent class.
    root.append(svg("line", { x1: x0 - 6, x2: x0 + 104, y1: y(r.chance), y2: y(r.chance), stroke: "#c22",
      "stroke-width": 2, "stroke-dasharray": "5 3", class: "chance" }));
  });
  root.append(svg("rect", { x: left, y: height - 18, width: 10, height: 10, fill: "#3b6fb6" }));
  root.append(svg("text", { x: left + 14, y: height - 9, "font-size": 11 }, "accuracy"));
  root.append(svg("rect", { x: left + 80, y: height - 18, width: 10, height: 10, fill: "#e08a2c" }));
  root.append(svg("text", { x: left + 94, y: height - 9, "font-size": 11 }, "macro-F1"));
  root.append(svg("line", { x1: left + 170, x2: left + 190, y1: height - 13, y2: height - 13, stroke: "#c22", "stroke-width": 2, "stroke-dasharray": "5 3" }));
  root.append(svg("text", { x: left + 194, y: height - 9, "font-size": 11 }, "chance (majority class)"));
  chart.replaceChildren(root);
}

function drawBest(results) {
  const top = results.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  const n = top.classes.length;
  const max = Math.max(1, ...top.confusion);
  const header = el("tr", {}, el("th", { text: "true \\ predicted" }), ...top.classes.map((c) => el("th", { text: c })));
  const rows = top.classes.map((c, i) =>
    el("tr", {}, el("th", { text: c }), ...top.classes.map((_, j) => {
      const v = top.confusion[i * n + j];
      const cell = el("td", { class: "num", text: String(v) });
      cell.style.background = `rgba(59,111,182,${(0.85 * v) / max})`;
      if (v / max > 0.5) cell.style.color = "#fff";
      return cell;
    })));
  const perClass = el("table", { class: "grid-table", id: "per-class" },
    el("tr", {}, el("th", { text: "class" }), el("th", { text: "accuracy" }), el("th", { text: "support" })),
    ...top.per_class.map((m) => el("tr", {}, el("td", { text: m.label }),
      // No held-out item (a class with one label is never held out): nothing measured, not 0%.
      m.support
        ? el("td", { class: "num", text: m.accuracy.toFixed(3) })
        : el("td", { class: "num muted", text: "—", title: "no held-out item of this class: label at least two to measure it" }),
      el("td", { class: "num", text: String(m.support) }))));
  best.replaceChildren(
    el("h2", { text: `Best depth: ${top.depth} (accuracy ${top.accuracy.toFixed(3)}, macro-F1 ${top.macro_f1.toFixed(3)}, ${top.n_test} held-out over ${top.folds} folds)` }),
    el("div", { class: "side-by-side" },
      el("div", {}, el("h3", { text: "Confusion matrix" }), el("table", { class: "confusion", id: "confusion" }, header, ...rows)),
      el("div", {}, el("h3", { text: "Per-class accuracy" }), perClass)),
  );
}

document.getElementById("run-probe").addEventListener("click", async (event) => {
  const button = event.target;
  button.disabled = true;
  progress.hidden = false;
  progress.value = 0;
  const results = [];
  try {
    for (const [i, depth] of depths.entries()) {
      status.textContent = `probing ${depth} (${i + 1}/${depths.length})…`;
      const answer = await call(apiUrl("/probe"), { method: "POST", json: { depth } });
      results.push(...answer.depths);
      progress.value = i + 1;
      drawChart(results);
    }
    drawBest(results);
    status.textContent = `done: ${results.length} depths`;
    chart.dataset.state = "done";
  } catch (error) {
    status.textContent = "";
    toast(error.message, "error");
  } finally {
    button.disabled = false;
  }
});
