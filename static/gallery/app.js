// Progressive enhancement: every form works without this file.
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // --- Drag and drop onto any .dropzone form --------------------------------
  document.querySelectorAll(".dropzone").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    ["dragenter", "dragover"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (e) {
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      if (zone.id === "upload-form") {
        uploadFiles(zone, Array.prototype.slice.call(e.dataTransfer.files));
      } else {
        input.files = e.dataTransfer.files;
        zone.submit();
      }
    });
  });

  // --- Uploads: one request per file, three at a time, each with progress ---
  var uploadForm = document.getElementById("upload-form");
  if (uploadForm) {
    uploadForm.addEventListener("submit", function (e) {
      var input = document.getElementById("upload-input");
      if (!input.files.length) return;
      e.preventDefault();
      uploadFiles(uploadForm, Array.prototype.slice.call(input.files));
      input.value = "";
    });
  }

  function uploadFiles(form, files) {
    var list = document.getElementById("upload-list");
    var queue = files.map(function (file) {
      var li = document.createElement("li");
      var name = document.createElement("span");
      name.textContent = file.name;
      var bar = document.createElement("progress");
      bar.max = 100; bar.value = 0;
      bar.setAttribute("aria-label", "Upload progress of " + file.name);
      var result = document.createElement("span");
      result.className = "result";
      li.appendChild(name); li.appendChild(bar); li.appendChild(result);
      list.appendChild(li);
      return { file: file, bar: bar, result: result };
    });
    var active = 0;
    function next() {
      while (active < 3 && queue.length) {
        active++;
        send(queue.shift()).then(function () { active--; next(); if (!active && !queue.length) pollStatus(true); });
      }
    }
    function send(item) {
      return new Promise(function (resolve) {
        var xhr = new XMLHttpRequest();
        var data = new FormData();
        data.append("images", item.file, item.file.name);
        xhr.open("POST", form.action);
        xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
        xhr.setRequestHeader("Accept", "application/json");
        xhr.upload.onprogress = function (e) { if (e.lengthComputable) item.bar.value = 100 * e.loaded / e.total; };
        xhr.onload = function () {
          item.bar.value = 100;
          var r = null;
          try { r = JSON.parse(xhr.responseText).results[0]; } catch (err) { r = null; }
          if (xhr.status === 413) r = { status: "rejected", message: "The file is too large." };
          if (!r) r = { status: "rejected", message: "The server answered " + xhr.status + "." };
          item.result.className = "result " + r.status;
          item.result.textContent = r.status === "added" ? "Uploaded" : (r.status === "duplicate" ? "Duplicate: " : "Rejected: ") + r.message;
          pollStatus(false);
          resolve();
        };
        xhr.onerror = function () {
          item.result.className = "result rejected";
          item.result.textContent = "Network error: not uploaded.";
          resolve();
        };
        xhr.send(data);
      });
    }
    next();
  }

  // --- Live embedding progress ----------------------------------------------
  var statusBox = document.getElementById("status");
  var timer = null;
  function fmtEta(s) {
    if (s === null || s === undefined) return "";
    if (s < 90) return " · about " + s + " s left";
    return " · about " + Math.round(s / 60) + " min left";
  }
  function pollStatus(reloadWhenDone) {
    if (!statusBox) return;
    fetch(statusBox.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        var bar = document.getElementById("status-bar");
        bar.max = Math.max(s.total, 1); bar.value = s.done;
        document.getElementById("status-text").textContent =
          s.counts.ready + " ready · " + s.remaining + " waiting · " + s.counts.failed + " failed" +
          (s.images_per_second ? " · " + s.images_per_second + " images/s" : "") + fmtEta(s.eta_seconds);
        clearTimeout(timer);
        if (s.remaining > 0) {
          timer = setTimeout(function () { pollStatus(true); }, 2000);
          statusBox.dataset.wasBusy = "1";
        } else if (statusBox.dataset.wasBusy && reloadWhenDone) {
          statusBox.dataset.wasBusy = "";
          // Refresh the thumbnails' state badges once the work is done, unless an upload is running.
          if (!document.querySelector("#upload-list progress:not([value='100'])")) window.location.reload();
        }
      })
      .catch(function () { timer = setTimeout(function () { pollStatus(reloadWhenDone); }, 5000); });
  }
  if (statusBox) pollStatus(false);
})();
