// Add images: one upload per file (bounded by the server), a progress bar, failures listed,
// and the files that are not images named with the reason, by the CLI's rule (add-rules).
import { apiUrl, call, el } from "./common.js";

const progress = document.getElementById("add-progress");
const status = document.getElementById("add-status");
const failures = document.getElementById("add-failures");
const skippedList = document.getElementById("add-skipped");
const rules = JSON.parse(document.getElementById("add-rules").textContent);
const PARALLEL = 3;

function suffixOf(name) {
  // As Python's PurePath.suffix: ".bashrc" and "file." have none.
  const base = name.split("/").pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 && dot < base.length - 1 ? base.slice(dot).toLowerCase() : "";
}

// null when the file is sent, else why not (the wording of `strata index`).
function skipReason(file) {
  const suffix = suffixOf(file.name);
  if (rules.image_suffixes.includes(suffix)) return null;
  const kind = rules.unsupported[suffix];
  if (kind) return rules.unsupported_reason.replace("{kind}", kind);
  // No suffix the rule knows, but the browser says image: let the server's decoder judge.
  if (suffix === "" && file.type.startsWith("image/")) return null;
  return rules.not_an_image_reason.replace("{suffix}", suffix || "none");
}

async function upload(files) {
  const images = [];
  const skipped = [];
  for (const file of files) {
    // Files picked one by one are all sent (the server judges each, as for files named to
    // `strata index`); a folder's files go by the CLI's rule for folders.
    const inFolder = Boolean(file.webkitRelativePath);
    const reason = inFolder ? skipReason(file) : null;
    if (reason === null) images.push(file);
    else if (!file.name.startsWith(".")) { // .DS_Store and friends: no one's image, not listed
      skipped.push(el("li", { text: `${file.webkitRelativePath}: ${reason}` }));
    }
  }
  status.dataset.state = "running"; // "done" again once this batch is through
  skippedList.replaceChildren(...skipped);
  document.getElementById("add-skipped-section").hidden = skipped.length === 0;
  const labels = document.getElementById("add-labels").value.trim();
  progress.hidden = false;
  progress.max = images.length || 1;
  progress.value = 0;
  failures.replaceChildren();
  const counts = { added: 0, replaced: 0, unchanged: 0, failed: 0 };
  let next = 0;
  const show = () => {
    status.textContent = `${progress.value}/${images.length} · ${counts.added} added, ${counts.replaced} replaced, ${counts.unchanged} unchanged, ${counts.failed} failed, ${skipped.length} skipped`;
  };
  async function worker() {
    while (next < images.length) {
      const file = images[next++];
      const name = file.webkitRelativePath || file.name;
      const params = new URLSearchParams({ name });
      if (labels) params.set("labels", labels);
      try {
        // Not sent: the server's answer to no bytes is worded for API users.
        if (!file.size) throw new Error("the file is empty (0 bytes)");
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
