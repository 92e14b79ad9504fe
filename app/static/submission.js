// A running evaluation's page: poll its status every 1.5 s and move the progress bar; reload when it ends,
// so the page shows the results (or the error).
(function () {
  "use strict";
  const card = document.getElementById("progress-card");
  if (!card) return;
  const url = card.dataset.statusUrl;
  const bar = document.getElementById("progress");
  const stage = document.getElementById("stage");
  const percent = document.getElementById("percent");
  const eta = document.getElementById("eta");
  const badge = document.getElementById("status");

  function show(s) {
    bar.value = s.progress;
    stage.textContent = s.current_stage || s.status;
    percent.textContent = (s.progress * 100).toFixed(1) + " %";
    eta.textContent = s.eta_seconds == null ? "" : "· about " + Math.ceil(s.eta_seconds) + " s left";
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
