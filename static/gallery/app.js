// Progressive enhancement: every page and form works without this file.
//
// On the gallery page, uploads run in this page (XHR, three files at a time)
// and the rest of the page is kept alive around them: the grid's pages, its
// state badges and the failed list are fetched and swapped in place, and a
// link that would leave the page opens in a new tab while files are still
// being sent. So a person keeps browsing the gallery while a large drop uploads.
(function () {
  "use strict";

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  function csrfToken(form) {
    var input = $("input[name=csrfmiddlewaretoken]", form);
    return input ? input.value : "";
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return Math.round(n / 1024) + " KB";
    return (n / 1048576).toFixed(1) + " MB";
  }

  // Selects marked data-autosubmit apply at once (a button is there without JS).
  // Buttons that ask first (resolving every group, emptying the trash).
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });

  $$("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // --- Uploads: one request per file, three at a time, each with progress ---
  var uploadForm = document.getElementById("upload-form");
  var uploadInput = document.getElementById("upload-input");
  var activeUploads = 0;
  var totals = { files: 0, finished: 0, added: 0, duplicate: 0, rejected: 0 };

  function updateSummary() {
    var box = document.getElementById("upload-summary");
    if (!box) return;
    box.hidden = false;
    var parts = [totals.added + " added", totals.duplicate + " duplicate" + (totals.duplicate === 1 ? "" : "s"), totals.rejected + " rejected"];
    if (totals.finished < totals.files) {
      box.textContent = "Uploading… " + totals.finished + " of " + totals.files + " done (" + parts.join(", ") +
        "). You can keep browsing this gallery; links open in a new tab until the uploads finish.";
    } else {
      box.textContent = totals.files + " file" + (totals.files === 1 ? "" : "s") + " sent: " + parts.join(", ") + ".";
      document.dispatchEvent(new CustomEvent("uploads:done", { detail: totals }));  // grid.js collapses the rows
    }
  }

  function makeItem(file, list) {
    var li = document.createElement("li");
    li.className = "upload-item";
    var name = document.createElement("span");
    name.className = "file-name";
    name.textContent = file.name;
    name.title = file.name;
    var size = document.createElement("span");
    size.className = "file-size";
    size.textContent = fmtBytes(file.size);
    var bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", "Upload of " + file.name);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", "0");
    var fill = document.createElement("span");
    bar.appendChild(fill);
    var result = document.createElement("span");
    result.className = "result";
    result.setAttribute("aria-live", "polite");
    result.textContent = "Waiting…";
    li.appendChild(name); li.appendChild(size); li.appendChild(bar); li.appendChild(result);
    list.insertBefore(li, list.firstChild);
    return {
      file: file, li: li, result: result,
      progress: function (pct) {
        fill.style.width = pct + "%";
        bar.setAttribute("aria-valuenow", String(Math.round(pct)));
      }
    };
  }

  function finishItem(item, r) {
    item.progress(100);
    item.li.classList.add(r.status);
    item.li.dataset.status = r.status;
    item.result.textContent = "";
    var label = { added: "Uploaded", duplicate: "Duplicate", rejected: "Rejected" }[r.status] || r.status;
    if (r.url) {
      var a = document.createElement("a");
      a.href = r.url;
      a.textContent = label;
      item.result.appendChild(a);
    } else {
      item.result.appendChild(document.createTextNode(label));
    }
    if (r.message) item.result.appendChild(document.createTextNode(": " + r.message));
    if (r.looks_like && r.id) lookAlike(item, r);
    totals.finished++;
    totals[r.status] = (totals[r.status] || 0) + 1;
    updateSummary();
  }

  // An added file that looks like an image already in the gallery: keep both, or skip (trash) the new one.
  function lookAlike(item, r) {
    item.li.classList.add("looks-like");
    var box = document.createElement("span");
    box.className = "look-alike";
    var like = document.createElement("a");
    like.href = r.looks_like.url;
    like.className = "look-alike-thumb";
    var img = document.createElement("img");
    img.src = r.looks_like.thumbnail;
    img.alt = r.looks_like.name;
    img.width = 48; img.height = 36;
    like.appendChild(img);
    box.appendChild(like);
    [["keep", "Keep both"], ["skip", "Skip this file"]].forEach(function (pair) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "ghost small look-alike-" + pair[0];
      b.textContent = pair[1];
      b.addEventListener("click", function () {
        var body = new FormData();
        body.append("like", r.looks_like.id);
        box.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
        fetch(r.url + pair[0] + "/", { method: "POST", body: body, credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken(uploadForm), Accept: "application/json" } })
          .then(function (resp) { return resp.json().then(function (j) { if (!resp.ok) throw new Error(j.error || resp.status); return j; }); })
          .then(function (j) {
            box.textContent = j.message;
            item.li.classList.add(pair[0] === "keep" ? "kept" : "skipped");
            if (pair[0] === "skip") {
              var card = document.querySelector('#grid [data-image-id="' + r.id + '"]');
              if (card) card.remove();
              status.kick();
            }
          })
          .catch(function (err) {
            box.querySelectorAll("button").forEach(function (x) { x.disabled = false; });
            box.appendChild(document.createTextNode(" Could not save: " + err.message));
          });
      });
      box.appendChild(b);
    });
    item.result.appendChild(box);
  }

  function send(item, form) {
    return new Promise(function (resolve) {
      var max = uploadInput && parseInt(uploadInput.dataset.maxBytes || "0", 10);
      if (max && item.file.size > max) {
        // The server would refuse it too; say so without sending the bytes.
        finishItem(item, { status: "rejected", message: "The file is too large (" + fmtBytes(item.file.size) + "; the limit is " + fmtBytes(max) + ")." });
        return resolve();
      }
      item.result.textContent = "Uploading…";
      var xhr = new XMLHttpRequest();
      var data = new FormData();
      data.append("images", item.file, item.file.name);
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) item.progress(95 * e.loaded / e.total); };
      xhr.onload = function () {
        var body = null, r = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (body && body.results && body.results.length) r = body.results[0];
        else if (xhr.status === 413) r = { status: "rejected", message: (body && body.error) || "The file is too large for this server." };
        else r = { status: "rejected", message: (body && body.error) || "The server answered " + xhr.status + "; the file was not saved." };
        finishItem(item, r);
        resolve();
      };
      xhr.onerror = function () {
        finishItem(item, { status: "rejected", message: "Network error: the file was not uploaded." });
        resolve();
      };
      xhr.send(data);
    });
  }

  function uploadFiles(form, files) {
    var list = document.getElementById("upload-list");
    var queue = files.map(function (f) { return makeItem(f, list); });
    document.dispatchEvent(new CustomEvent("uploads:start"));  // grid.js opens the upload panel
    totals.files += queue.length;
    activeUploads += queue.length;
    updateSummary();
    var running = 0;
    function next() {
      while (running < 3 && queue.length) {
        running++;
        send(queue.shift(), form).then(function () {
          running--; activeUploads--;
          status.kick();
          next();
        });
      }
    }
    next();
  }

  if (uploadForm) {
    uploadForm.addEventListener("submit", function (e) {
      if (!uploadInput.files.length) return;
      e.preventDefault();
      uploadFiles(uploadForm, Array.prototype.slice.call(uploadInput.files));
      uploadInput.value = "";
    });
    uploadInput.addEventListener("change", function () {
      if (!uploadInput.files.length) return;
      uploadFiles(uploadForm, Array.prototype.slice.call(uploadInput.files));
      uploadInput.value = "";
    });
  }

  // While files are being sent, leaving the page would cancel them.
  window.addEventListener("beforeunload", function (e) {
    if (activeUploads > 0) { e.preventDefault(); e.returnValue = ""; }
  });
  document.addEventListener("click", function (e) {
    if (activeUploads <= 0 || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    var a = e.target.closest && e.target.closest("a[href]");
    if (!a || a.hasAttribute("data-grid-nav") || a.getAttribute("href").charAt(0) === "#" || a.target) return;
    e.preventDefault();
    window.open(a.href, "_blank", "noopener");
  });

  // --- Search with an outside picture ---------------------------------------
  var searchForm = document.getElementById("search-form");
  function submitSearch() {
    // Results replace this page, unless uploads are running: then they open in a new tab.
    searchForm.target = activeUploads > 0 ? "_blank" : "";
    searchForm.classList.add("busy-search");
    searchForm.submit();
  }
  if (searchForm) {
    var queryInput = document.getElementById("query-input");
    queryInput.addEventListener("change", function () { if (queryInput.files.length) submitSearch(); });
  }

  // --- Drag and drop onto any .dropzone form --------------------------------
  $$(".dropzone").forEach(function (zone) {
    var depth = 0;
    zone.addEventListener("dragenter", function (e) { e.preventDefault(); depth++; zone.classList.add("dragover"); });
    zone.addEventListener("dragover", function (e) { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = "copy"; });
    zone.addEventListener("dragleave", function () { depth = Math.max(0, depth - 1); if (!depth) zone.classList.remove("dragover"); });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      depth = 0;
      zone.classList.remove("dragover");
      var files = e.dataTransfer && e.dataTransfer.files;
      if (!files || !files.length) return;
      if (zone.id === "upload-form") {
        uploadFiles(zone, Array.prototype.slice.call(files));
      } else {
        $("input[type=file]", zone).files = files;
        submitSearch();
      }
    });
  });
  // A file dropped beside a zone would make the browser navigate away to it.
  if ($(".dropzone")) {
    ["dragover", "drop"].forEach(function (ev) {
      window.addEventListener(ev, function (e) { if (!e.target.closest || !e.target.closest(".dropzone")) e.preventDefault(); });
    });
  }

  // --- The grid: pages and refreshes swapped in place -------------------------
  var gridBusy = false;
  function loadGrid(url, push, focus) {
    var region = document.getElementById("grid-region");
    if (!region || gridBusy) return Promise.resolve();
    gridBusy = true;
    region.classList.add("loading");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["grid-region", "failed-region", "total-count"].forEach(function (id) {
          var fresh = doc.getElementById(id), old = document.getElementById(id);
          if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        });
        document.dispatchEvent(new CustomEvent("grid:replaced"));  // grid.js marks the selection again
        if (push) history.pushState({ grid: true }, "", url);
        if (focus) {
          var heading = document.getElementById("grid-title");
          var fresh = document.getElementById("grid-region");
          fresh.scrollIntoView({ block: "start" });
          if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
        }
      })
      .catch(function () { if (push) window.location.href = url; })
      .then(function () {
        gridBusy = false;
        var r = document.getElementById("grid-region");
        if (r) r.classList.remove("loading");
      });
  }
  // For the viewer and the selection (viewer.js, grid.js): the same upload path and grid refresh.
  window.imagesearch = {
    uploadFiles: function (files) { if (uploadForm) uploadFiles(uploadForm, files); },
    reloadGrid: function (url) { return loadGrid(url || window.location.href, false, false); }
  };
  if (document.getElementById("grid-region")) {
    document.addEventListener("click", function (e) {
      var a = e.target.closest && e.target.closest("a[data-grid-nav]");
      if (!a || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      loadGrid(a.href, true, true);
    });
    window.addEventListener("popstate", function () { loadGrid(window.location.href, false, false); });
  }

  // --- Live embedding progress ----------------------------------------------
  var status = (function () {
    var box = document.getElementById("status");
    var timer = null, lastDone = null, lastTotal = null, lastGridRefresh = 0;
    if (!box) return { kick: function () {} };
    // Time left from the polls this page saw (static/gallery/eta.js): smoothed, warm-up and stalls handled.
    var eta = window.ImagesearchEta ? new window.ImagesearchEta() : null;

    function render(s) {
      var fill = document.getElementById("status-fill");
      var bar = document.getElementById("status-bar");
      var pct = s.total ? 100 * s.done / s.total : 0;
      fill.style.width = pct.toFixed(1) + "%";
      bar.setAttribute("aria-valuemax", String(s.total));
      bar.setAttribute("aria-valuenow", String(s.done));
      $("[data-count=ready]", box).textContent = s.counts.ready;
      $("[data-count=waiting]", box).textContent = s.remaining;
      $("[data-count=failed]", box).textContent = s.counts.failed;
      var etaText = document.getElementById("status-eta");
      var left = eta ? eta.add(performance.now() / 1000, s.done, s.total) : null;
      if (s.remaining) {
        etaText.textContent = window.ImagesearchEta ? window.ImagesearchEta.format(left) +
          (left !== null && eta.rate ? " · " + window.ImagesearchEta.formatRate(eta.rate) : "") : "Working…";
      } else {
        etaText.textContent = s.total ? "All images processed" : "Nothing to process yet";
      }
      var idx = document.getElementById("status-index");
      idx.textContent = s.index.label;  // plain words from the server; build numbers only in staff's panel
      var how = document.getElementById("status-search");
      if (how && s.index.search) how.textContent = s.index.search;
      box.classList.toggle("busy", s.remaining > 0);
    }

    function maybeRefreshGrid(s, force) {
      var changed = s.done !== lastDone || s.total !== lastTotal;
      lastDone = s.done; lastTotal = s.total;
      var now = Date.now();
      if ((changed || force) && now - lastGridRefresh > 2500) {
        lastGridRefresh = now;
        // While the viewer shows an image its address is the image's: the grid is the gallery's.
        loadGrid((history.state && history.state.gallery) || window.location.href, false, false);
      } else if (changed) {
        lastDone = null; // not refreshed yet: refresh on a later poll
      }
    }

    function poll() {
      clearTimeout(timer);
      timer = null;
      fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          var first = lastDone === null && lastTotal === null;
          render(s);
          if (first) { lastDone = s.done; lastTotal = s.total; } else maybeRefreshGrid(s, false);
          if (s.remaining > 0 || activeUploads > 0 || s.index.stale) timer = setTimeout(poll, 2000);
        })
        .catch(function () { timer = setTimeout(poll, 5000); });
    }
    poll();
    return { kick: function () { if (!timer) timer = setTimeout(poll, 300); else { clearTimeout(timer); timer = setTimeout(poll, 300); } } };
  })();
})();
