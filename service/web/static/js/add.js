// Add images: one upload per file (bounded by the server), a progress bar, failures listed.
import { apiUrl, call, el } from "./common.js";

const progress = document.getElementById("add-progress");
const status = document.getElementById("add-status");
const failures = document.getElementById("add-failures");
const PARALLEL = 3;

async function upload(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?)$/i.test(f.name));
  const labels = document.getElementById("add-labels").value.trim();
  progress.hidden = false;
  progress.max = images.length || 1;
  progress.value = 0;
  failures.replaceChildren();
  const counts = { added: 0, replaced: 0, unchanged: 0, failed: 0 };
  let next = 0;
  const show = () => {
    status.textContent = `${progress.value}/${images.length} · ${counts.added} added, ${counts.replaced} replaced, ${counts.unchanged} unchanged, ${counts.failed} failed`;
  };
  async function worker() {
    while (next < images.length) {
      const file = images[next++];
      const name = file.webkitRelativePath || file.name;
      const params = new URLSearchParams({ name });
      if (labels) params.set("labels", labels);
      try {
        const result = await call(`${apiUrl("/images")}?${params}`, { method: "POST", body: file });
        counts[result.status] = (counts[result.status] || 0) + 1;
        if (result.status === "failed") {
          failures.append(el("li", { text: `${name}: ${result.error.message}${result.error.hint ? ` (${result.error.hint})` : ""}` }));
        }
      } catch (error) {
        counts.failed++;
        failures.append(el("li", { text: `${name}: ${error.message}` }));
      }
      progress.value++;
      show();
    }
  }
  show();
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  status.dataset.state = "done";
}

for (const id of ["add-files", "add-folder"]) {
  document.getElementById(id).addEventListener("change", (e) => upload(e.target.files));
}
