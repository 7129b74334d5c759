// Label workbench, keyboard first. Every action is one gRPC write through /api.
import { apiUrl, call, el, thumb, thumbUrl, toast } from "./common.js";

let active = "suggest";
const loaded = new Set();

function showTab(name) {
  active = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  if (!loaded.has(name)) loadTab(name);
}

function loadTab(name) {
  loaded.add(name);
  loaders[name]().catch((error) => {
    loaded.delete(name);
    toast(error.message, "error");
  });
}

// A load of a tab's box that failed: the box says why, in place of "loading…", with a Retry
// button, and the next click of the tab loads it again.
function showFailure(tab, box, error) {
  loaded.delete(tab);
  box.dataset.state = "error";
  box.replaceChildren(el("div", { class: "failure" },
    el("p", { class: "error", text: error.message }),
    el("button", { class: "retry", text: "Retry", onclick: () => loadTab(tab) })));
}

async function assign(ids, label) {
  await call(apiUrl("/labels"), { method: "POST", json: { ids, label } });
}

function classList(target, classes) {
  target.replaceChildren(...classes.map((c, i) =>
    el("li", { "data-class": c }, i < 9 ? el("kbd", { text: String(i + 1) }) : "", ` ${c}`)));
}

// -- a keyboard queue (suggest and issues share it) -------------------------------------------

function queue({ tab, card, classesBox, fetchUrl, describe }) {
  const state = { items: [], classes: [], position: 0, skipped: new Set(), done: new Set(), busy: false };
  const current = () => state.items[state.position];

  function render() {
    const item = current();
    if (!item) {
      card.replaceChildren(el("p", { class: "muted", text: "Queue empty." }));
      card.dataset.id = "";
      return;
    }
    card.dataset.id = String(item.id);
    card.replaceChildren(
      el("img", { class: "thumb big", src: thumbUrl(item.id), alt: item.uri, "data-item-id": item.id }),
      el("div", { class: "card-text" }, el("p", { class: "uri", text: item.uri }), ...describe(item)),
    );
  }

  async function load() {
    card.dataset.state = "loading";
    card.replaceChildren(el("p", { class: "muted", text: "loading…" }));
    let answer;
    try {
      answer = await call(fetchUrl());
    } catch (error) {
      card.dataset.id = "";
      showFailure(tab, card, error);
      throw error;
    }
    card.dataset.state = "done";
    state.classes = answer.classes;
    state.items = answer.items.filter((i) => !state.skipped.has(i.id) && !state.done.has(i.id));
    state.position = 0;
    classList(classesBox, state.classes);
    render();
  }

  async function advance() {
    state.position++;
    if (state.position >= state.items.length) await load();
    else render();
  }

  async function label(name) {
    const item = current();
    if (!item || !name || state.busy) return;
    state.busy = true;
    try {
      await assign([item.id], name);
      state.done.add(item.id);
      if (!state.classes.includes(name)) { state.classes.push(name); classList(classesBox, state.classes); }
      const log = document.getElementById("workbench-log");
      log.prepend(el("li", { "data-id": item.id, "data-label": name, text: `#${item.id} ${item.uri} → ${name}` }));
      await advance();
    } catch (error) {
      toast(error.message, "error");
    } finally {
      state.busy = false;
    }
  }

  function skip() {
    const item = current();
    if (item) state.skipped.add(item.id);
    return advance().catch((error) => toast(error.message, "error"));
  }

  return { state, load, label, skip, current };
}

const suggest = queue({
  tab: "suggest",
  card: document.getElementById("suggest-card"),
  classesBox: document.getElementById("suggest-classes"),
  fetchUrl: () => apiUrl("/suggest?n=20"),
  describe: (item) => [
    item.predicted
      ? el("p", {}, "predicted ", el("strong", { text: item.predicted }), ` ${(100 * item.confidence).toFixed(0)}% `, el("kbd", { text: "Enter" }))
      : el("p", { class: "muted", text: "no prediction yet (run a probe)" }),
    el("p", { class: "muted", text: `uncertainty ${item.score.toFixed(3)}` }),
  ],
});

const issues = queue({
  tab: "issues",
  card: document.getElementById("issues-card"),
  classesBox: document.getElementById("issues-classes"),
  fetchUrl: () => apiUrl("/issues"),
  describe: (item) => [
    el("p", {}, "human label ", el("strong", { text: item.label }), " ", el("kbd", { text: "K" }), " keep"),
    el("p", {}, "suggested ", el("strong", { text: item.suggested }), " ", el("kbd", { text: "F" }), " fix"),
    el("p", { class: "muted", text: `issue score ${item.score.toFixed(3)}` }),
  ],
});

document.getElementById("new-class").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.label;
  const name = input.value.trim();
  if (name && !suggest.state.classes.includes(name)) {
    suggest.state.classes.push(name);
    classList(document.getElementById("suggest-classes"), suggest.state.classes);
  }
  input.value = "";
  input.blur();
});

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  const q = active === "suggest" ? suggest : active === "issues" ? issues : null;
  if (q) {
    if (/^[1-9]$/.test(key)) {
      const name = q.state.classes[Number(key) - 1];
      if (name) q.label(name);
    } else if (key === "Enter" && active === "suggest") {
      const item = q.current();
      if (item && item.predicted) q.label(item.predicted);
    } else if (key.toLowerCase() === "s") {
      q.skip();
    } else if (key.toLowerCase() === "k" && active === "issues") {
      q.skip();
    } else if (key.toLowerCase() === "f" && active === "issues") {
      const item = q.current();
      if (item) q.label(item.suggested);
    } else {
      return;
    }
    event.preventDefault();
  } else if (active === "bulk" && key.toLowerCase() === "a") {
    for (const tile of document.querySelectorAll("#bulk-grid .tile")) tile.classList.add("on");
    bulkCount();
  }
});

// -- duplicates ---------------------------------------------------------------------------------

async function loadDuplicates() {
  const box = document.getElementById("dup-groups");
  box.dataset.state = "loading";
  box.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  const threshold = document.getElementById("dup-threshold").value;
  let answer;
  try {
    answer = await call(apiUrl(`/duplicates?threshold=${encodeURIComponent(threshold)}`));
  } catch (error) {
    showFailure("duplicates", box, error);
    throw error;
  }
  box.dataset.state = "done";
  // The threshold used (the depth's own default when the field is empty) stays in view.
  document.getElementById("dup-threshold").placeholder = `${answer.threshold} (${answer.depth})`;
  if (!answer.groups.length) {
    box.replaceChildren(el("p", { class: "muted", text: `No group at cosine ≥ ${answer.threshold} (${answer.depth}).` }));
    return;
  }
  box.replaceChildren(...answer.groups.map((members) => {
    const group = el("div", { class: "dup-group no-search" });
    let keep = members[0].id;
    const tiles = members.map((m) => {
      const tile = el("figure", { class: "tile", "data-id": m.id },
        el("img", { class: "thumb", src: thumbUrl(m.id), alt: m.uri }), el("figcaption", { text: m.uri }));
      tile.addEventListener("click", () => {
        keep = m.id;
        for (const t of tiles) t.classList.toggle("keep", t === tile);
      });
      return tile;
    });
    tiles[0].classList.add("keep");
    const drop = el("button", { class: "danger", text: "Drop the others" });
    drop.addEventListener("click", async () => {
      const ids = members.map((m) => m.id).filter((id) => id !== keep);
      try {
        await call(apiUrl("/delete"), { method: "POST", json: { ids } });
        group.replaceChildren(el("p", { class: "muted", text: `kept #${keep}, dropped ${ids.length}` }));
      } catch (error) {
        toast(error.message, "error");
      }
    });
    group.append(el("div", { class: "thumb-grid" }, ...tiles), drop);
    return group;
  }));
}
document.getElementById("dup-load").addEventListener("click", () => loadDuplicates().catch((e) => toast(e.message, "error")));

// -- bulk -----------------------------------------------------------------------------------------

let bulkToken = "";
let lastClicked = null;

function bulkCount() {
  document.getElementById("bulk-count").textContent = String(document.querySelectorAll("#bulk-grid .tile.on").length);
}

async function loadBulk(reset = true) {
  const grid = document.getElementById("bulk-grid");
  if (reset) { grid.replaceChildren(); bulkToken = ""; }
  const source = document.getElementById("bulk-source").value;
  const params = new URLSearchParams({ page_size: "60", label_source: source, page_token: bulkToken });
  let answer;
  try {
    answer = await call(`${apiUrl("/items")}?${params}`);
  } catch (error) {
    // A first page that failed says so in the grid; "More" stays for another try.
    if (reset) showFailure("bulk", grid, error);
    throw error;
  }
  if (grid.dataset.state === "error") grid.replaceChildren();
  grid.dataset.state = "done";
  bulkToken = answer.next_page_token;
  document.getElementById("bulk-more").hidden = !bulkToken;
  for (const item of answer.items) {
    const tile = el("figure", { class: "tile no-search", "data-id": item.id },
      thumb(item.id, item.uri), el("figcaption", { text: item.labels.map((l) => l.label).join(", ") || item.uri }));
    tile.addEventListener("click", (event) => {
      const tiles = [...grid.children];
      if (event.shiftKey && lastClicked) {
        const [a, b] = [tiles.indexOf(lastClicked), tiles.indexOf(tile)].sort((x, y) => x - y);
        for (const t of tiles.slice(a, b + 1)) t.classList.add("on");
      } else {
        tile.classList.toggle("on");
      }
      lastClicked = tile;
      bulkCount();
    });
    grid.append(tile);
  }
  bulkCount();
}
document.getElementById("bulk-source").addEventListener("change", () => loadBulk().catch((e) => toast(e.message, "error")));
document.getElementById("bulk-more").addEventListener("click", () => loadBulk(false).catch((e) => toast(e.message, "error")));
document.getElementById("bulk-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = document.getElementById("bulk-label").value.trim();
  const ids = [...document.querySelectorAll("#bulk-grid .tile.on")].map((t) => Number(t.dataset.id));
  if (!ids.length || !label) return;
  try {
    await assign(ids, label);
    toast(`labelled ${ids.length} item(s) “${label}”`);
    await loadBulk();
  } catch (error) {
    toast(error.message, "error");
  }
});

// Each says in its tab why it failed (showFailure); loadTab toasts it too.
const loaders = {
  suggest: () => suggest.load(),
  issues: () => issues.load(),
  duplicates: () => loadDuplicates(),
  bulk: () => loadBulk(),
};
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => { showTab(b.dataset.tab); b.blur(); });
document.querySelector("main").append(el("h3", { text: "This session" }), el("ol", { id: "workbench-log", class: "log" }));
showTab(new URLSearchParams(window.location.search).get("tab") || "suggest");
