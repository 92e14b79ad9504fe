// The leaderboard table: sort by any column (click a header; again to reverse), and tie each row to its
// point on the chart (hovering one highlights the other). Plain DOM, no library.
(function () {
  "use strict";
  const table = document.getElementById("board");
  if (!table) return;
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);

  function value(row, col, type) {
    const raw = row.cells[col].dataset.v;
    if (type !== "num") return (raw || "").toLowerCase();
    return raw === "" || raw === undefined ? NaN : parseFloat(raw);
  }

  function sortBy(col, descending) {
    const type = headers[col].dataset.type;
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = value(a, col, type), y = value(b, col, type);
      if (type === "num") {  // empty cells last, whichever the direction
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
        return descending ? y - x : x - y;
      }
      return descending ? y.localeCompare(x) : x.localeCompare(y);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h, i) {
      if (i === col) h.setAttribute("aria-sort", descending ? "descending" : "ascending");
      else h.removeAttribute("aria-sort");
    });
  }

  headers.forEach(function (th, col) {
    th.querySelector("button").addEventListener("click", function () {
      const current = th.getAttribute("aria-sort");
      // numbers (scores) start from the best, i.e. the largest; text and the rank start ascending
      const firstDescending = th.dataset.type === "num" && col !== 0;
      const descending = current ? current === "ascending" : firstDescending;
      sortBy(col, descending);
    });
  });

  function link(id, on) {
    document.querySelectorAll('[data-id="' + id + '"]').forEach(function (el) { el.classList.toggle("hl", on); });
  }
  document.querySelectorAll("#board tbody tr, #chart .point").forEach(function (el) {
    el.addEventListener("mouseenter", function () { link(el.dataset.id, true); });
    el.addEventListener("mouseleave", function () { link(el.dataset.id, false); });
  });
})();
