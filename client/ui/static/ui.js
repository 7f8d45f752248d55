// Live refresh: the memories table from /api/memories, a memory's charts from its fragment.
"use strict";
const EVERY_MS = 2000;
const fmt = (n) => Number(n).toLocaleString("en-US");

function refreshMemories(table) {
  fetch(table.dataset.refresh).then((r) => r.json()).then((mems) => {
    for (const m of mems) {
      const row = table.querySelector(`tr[data-name="${CSS.escape(m.name)}"]`);
      if (!row) { location.reload(); return; }  // a new memory: redraw the table
      for (const cell of row.querySelectorAll("[data-field]")) {
        const f = cell.dataset.field;
        cell.textContent = f === "fill_pct" ? (100 * m.fill).toFixed(1) : fmt(m[f]);
      }
    }
  }).catch(() => {});
}

function refreshCharts(section) {
  fetch(section.dataset.refresh).then((r) => (r.ok ? r.text() : null)).then((html) => {
    if (html) section.innerHTML = html;
  }).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("memories");
  if (table) setInterval(() => refreshMemories(table), EVERY_MS);
  const charts = document.getElementById("charts");
  if (charts) setInterval(() => refreshCharts(charts), EVERY_MS);
});
