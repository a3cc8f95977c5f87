// The exports page: while an export is pending or running, ask for the status
// JSON every few seconds and reload the page when one of them changes state,
// so its download link (or its error) appears without a manual refresh.
(function () {
  "use strict";
  var section = document.getElementById("exports");
  var url = section && section.getAttribute("data-poll");
  if (!url) return;
  var delay = 2000;

  function shown() {
    var out = {};
    section.querySelectorAll("tr[data-export-id]").forEach(function (row) {
      out[row.getAttribute("data-export-id")] = row.getAttribute("data-status");
    });
    return out;
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        var before = shown();
        var changed = data.exports.some(function (e) {
          return String(e.id) in before && before[String(e.id)] !== e.status;
        });
        if (changed) { window.location.reload(); return; }
        delay = Math.min(delay * 1.3, 15000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 15000); });
  }
  window.setTimeout(poll, delay);
})();
