// Shared helpers for every page: API calls with the CSRF header, thumbnails, hit columns,
// and "search by this result" (click any thumbnail anywhere).

export const collection = document.body.dataset.collection || "";

export function apiUrl(path) {
  return `/api/collections/${encodeURIComponent(collection)}${path}`;
}

export function pageUrl(path) {
  return `/collections/${encodeURIComponent(collection)}${path}`;
}

export function csrf() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

// fetch + JSON; throws an Error carrying the server's message (and .status).
export async function call(url, { method = "GET", json, body, headers = {} } = {}) {
  const options = { method, headers: { ...headers }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrf();
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (body !== undefined) {
    options.body = body;
  }
  const response = await fetch(url, options);
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) {
      const doc = await response.json();
      if (doc.error) message = `${doc.error.code}: ${doc.error.message}`;
    }
    if (response.status === 401 && method === "GET") {
      window.location = `/login?next=${encodeURIComponent(window.location.pathname)}`;
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return type.includes("json") ? response.json() : response;
}

export function thumbUrl(id) {
  return apiUrl(`/thumbnails/${id}`);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function thumb(id, uri, extraClass = "") {
  return el("img", {
    class: `thumb ${extraClass}`.trim(),
    src: thumbUrl(id),
    alt: uri,
    title: `${uri} (click: search by this image)`,
    loading: "lazy",
    "data-item-id": id,
  });
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 8000 : 3000);
}

// One <li data-uri> per hit, in rank order, inside each column's [data-depth] list.
export function renderHits(container, depths) {
  for (const column of container.querySelectorAll("[data-depth]")) column.replaceChildren();
  for (const { depth, hits } of depths) {
    const column = container.querySelector(`[data-depth="${CSS.escape(depth)}"]`);
    if (!column) continue;
    column.replaceChildren(
      ...hits.map((hit, rank) =>
        el(
          "li",
          { class: "hit", "data-uri": hit.uri, "data-id": hit.id, "data-rank": rank + 1 },
          thumb(hit.id, hit.uri),
          el(
            "div",
            { class: "hit-text" },
            el("a", { href: pageUrl(`/items/${hit.id}`), text: hit.uri, class: "uri" }),
            el("span", { class: "score", text: hit.score.toFixed(3) }),
            el("span", { class: "labels", text: hit.labels.join(", ") }),
          ),
        ),
      ),
    );
    if (!hits.length) column.append(el("li", { class: "muted", text: "no hit" }));
  }
}

// A thumbnail that has not been made yet shows a neutral placeholder.
document.addEventListener(
  "error",
  (event) => {
    const target = event.target;
    if (target instanceof HTMLImageElement && target.classList.contains("thumb")) {
      target.classList.add("missing");
      target.removeAttribute("src");
    }
  },
  true,
);

// "Search by this result": any thumbnail of an item, on any page.
document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLImageElement) || !target.dataset.itemId) return;
  if (target.closest(".no-search") || !collection) return;
  event.preventDefault();
  window.location = pageUrl(`/search?item=${target.dataset.itemId}`);
});
