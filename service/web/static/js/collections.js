// Coverage bars: widths from the counts the server rendered.
for (const box of document.querySelectorAll(".coverage")) {
  const items = Number(box.dataset.items) || 0;
  const share = (n) => (items ? `${(100 * Number(n)) / items}%` : "0");
  box.querySelector(".human").style.width = share(box.dataset.human);
  box.querySelector(".predicted").style.width = share(
    Math.max(0, items - Number(box.dataset.human) - Number(box.dataset.none)),
  );
}
