// Berth's pages work without this script; it adds copy buttons and a live
// filter of the table a search box names (data-filter).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button.copy")) {
    b.addEventListener("click", () => {
      const text = b.dataset.copy;
      const done = () => { b.textContent = "Copied"; setTimeout(() => { b.textContent = "Copy"; }, 1500); };
      // without the clipboard API (or its permission), a selected textarea
      const fallback = () => {
        const t = document.createElement("textarea");
        t.value = text;
        document.body.appendChild(t);
        t.select();
        try { if (document.execCommand("copy")) done(); } catch (e) { /* nothing to copy with */ }
        t.remove();
        b.focus();
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
  }
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const rows = () => document.querySelectorAll(input.dataset.filter);
    input.addEventListener("input", () => {
      const q = input.value.toLowerCase();
      for (const r of rows()) {
        const name = (r.dataset.name || "").toLowerCase();
        r.hidden = !!q && !!r.dataset.name && !name.includes(q);
      }
    });
  }
});
