// A running evaluation's page: poll its status every 1.5 s and move the progress bar; reload when it ends,
// so the page shows the results (or the error).
(function () {
  "use strict";
  const card = document.getElementById("progress-card");
  if (!card) return;
  const url = card.dataset.statusUrl;
  const bar = document.getElementById("progress");
  const summary = document.getElementById("summary");
  const badge = document.getElementById("status");

  function show(s) {
    bar.value = s.progress;
    summary.textContent = s.summary;  // place in the queue, or stage and progress, with the ETA (server-side)
    badge.textContent = s.status;
    badge.className = "status status-" + s.status;
  }

  function poll() {
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        show(s);
        if (s.status === "queued" || s.status === "running") setTimeout(poll, 1500);
        else window.location.reload();
      })
      .catch(function () { setTimeout(poll, 5000); });  // the server restarting: try again, slower
  }
  setTimeout(poll, 1500);
})();
