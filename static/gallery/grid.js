// The gallery page around its grid: the toolbar's panels and "More" menu, a
// drop anywhere on the window uploads (through app.js's upload path, with its
// per-file rows), finished upload rows fold into their summary, and the grid's
// selection with its bulk actions (trash with one Undo, ZIP download, find
// similar to these).
(function () {
  "use strict";

  var UI = window.imagesearchUI;
  var cfgEl = document.getElementById("gallery-config");
  if (!UI || !cfgEl) return;
  var C = cfgEl.dataset;
  var canEdit = C.canEdit === "1";
  var root = document.documentElement;

  function viewerOpen() { return !!(window.imagesearchViewer && window.imagesearchViewer.isOpen()); }

  // --- Toolbar panels (upload, search with a picture) ----------------------
  function panelToggles(id) { return Array.prototype.slice.call(document.querySelectorAll('[data-panel="' + id + '"]')); }
  function setPanel(id, open, focus) {
    var panel = document.getElementById(id);
    if (!panel) return;
    panel.classList.toggle("open", open);
    panelToggles(id).forEach(function (t) { t.setAttribute("aria-expanded", String(open)); });
    if (open && focus) {
      var first = panel.querySelector(".file-button, select, button");
      if (first) first.focus();
    }
  }
  ["upload-form", "search-form"].forEach(function (id) {
    panelToggles(id).forEach(function (t) {
      t.setAttribute("role", "button");
      // An empty gallery's page opens with its upload panel shown (the first thing to do there).
      var initial = document.getElementById(id);
      t.setAttribute("aria-expanded", String(!!(initial && initial.classList.contains("open"))));
      t.addEventListener("click", function (e) {
        e.preventDefault();
        var panel = document.getElementById(id);
        setPanel(id, !panel.classList.contains("open"), true);
      });
    });
  });
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-close-panel]");
    if (!b) return;
    setPanel(b.dataset.closePanel, false);
    var t = panelToggles(b.dataset.closePanel)[0];
    if (t) t.focus();
  });
  document.addEventListener("uploads:start", function () { setPanel("upload-form", true, false); });

  // --- "More" (a menu on phones; inline on wide screens) -------------------
  var moreWrap = document.getElementById("toolbar-more-wrap");
  var moreToggle = document.getElementById("more-toggle");
  var moreItems = document.getElementById("toolbar-more");
  if (moreWrap && moreItems && !moreItems.querySelector("a, button")) moreWrap.hidden = true;
  function setMore(open) {
    moreWrap.classList.toggle("open", open);
    moreToggle.setAttribute("aria-expanded", String(open));
  }
  if (moreToggle) {
    moreToggle.addEventListener("click", function () {
      var open = !moreWrap.classList.contains("open");
      setMore(open);
      if (open) { var first = moreItems.querySelector("a, button"); if (first) first.focus(); }
    });
    document.addEventListener("click", function (e) { if (!moreWrap.contains(e.target)) setMore(false); });
    moreWrap.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && moreWrap.classList.contains("open")) { setMore(false); moreToggle.focus(); e.stopPropagation(); }
    });
  }

  // --- Drop anywhere on the window to upload ---------------------------------
  var uploadForm = document.getElementById("upload-form");
  if (uploadForm) {
    var overlay = document.createElement("div");
    overlay.className = "drop-overlay";
    overlay.id = "drop-overlay";
    overlay.hidden = true;
    overlay.innerHTML = '<div class="drop-overlay-inner"><svg class="drop-icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M12 16V4m0 0-4 4m4-4 4 4M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3"/></svg><p></p></div>';
    overlay.querySelector("p").textContent = "Drop to upload to “" + C.title + "”";
    document.body.appendChild(overlay);
    var depth = 0;
    var hasFiles = function (e) {
      var types = e.dataTransfer && e.dataTransfer.types;
      return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
    };
    var hide = function () { depth = 0; overlay.hidden = true; };
    window.addEventListener("dragenter", function (e) {
      if (!hasFiles(e) || viewerOpen()) return;
      depth++;
      // Over the open search panel a drop searches; elsewhere it uploads.
      var search = e.target.closest && e.target.closest("#search-form.open");
      overlay.hidden = !!search;
    });
    window.addEventListener("dragleave", function () { depth = Math.max(0, depth - 1); if (!depth) hide(); });
    window.addEventListener("dragend", hide);
    window.addEventListener("drop", function (e) {
      hide();
      if (!hasFiles(e) || viewerOpen()) return;
      if (e.target.closest && e.target.closest(".dropzone")) return;  // the zone's own handler (app.js) takes it
      e.preventDefault();
      var files = e.dataTransfer.files;
      if (files && files.length && window.imagesearch) window.imagesearch.uploadFiles(Array.prototype.slice.call(files));
    });
  }

  // --- Finished uploads fold into the summary; problems stay in view ---------
  var collapseBtn = document.getElementById("upload-collapse");
  var uploadList = document.getElementById("upload-list");
  function foldLabel() {
    var n = uploadList.querySelectorAll(".upload-item.folded").length;
    var open = uploadList.classList.contains("show-folded");
    collapseBtn.hidden = n === 0;
    collapseBtn.textContent = open ? "Hide the " + UI.plural(n, "uploaded file") : "Show the " + UI.plural(n, "uploaded file");
    collapseBtn.setAttribute("aria-expanded", String(open));
  }
  if (collapseBtn && uploadList) {
    document.addEventListener("uploads:done", function () {
      Array.prototype.forEach.call(uploadList.querySelectorAll(".upload-item"), function (li) {
        // Added and nothing to decide: fold. Duplicates, rejections and look-alikes keep their row and reason.
        if (li.dataset.status === "added" && !li.classList.contains("looks-like")) li.classList.add("folded");
      });
      uploadList.classList.remove("show-folded");
      foldLabel();
    });
    collapseBtn.addEventListener("click", function () { uploadList.classList.toggle("show-folded"); foldLabel(); });
  }

  // --- Selection ---------------------------------------------------------------
  var selected = new Set(), anchor = null;
  var bar = document.createElement("div");
  bar.className = "select-bar";
  bar.id = "select-bar";
  bar.setAttribute("role", "region");
  bar.setAttribute("aria-label", "Selection");
  bar.hidden = true;
  bar.innerHTML =
    '<span class="select-count" id="select-count" aria-live="polite">0 selected</span>' +
    '<div class="select-actions">' +
    '<button type="button" class="small ghost" data-act="all">Select all on page</button>' +
    '<button type="button" class="small ghost" data-act="similar">Find similar to these</button>' +
    '<button type="button" class="small ghost" data-act="download">Download</button>' +
    (canEdit ? '<button type="button" class="small danger" data-act="trash">Delete</button>' : "") +
    '<button type="button" class="small ghost" data-act="clear">Clear</button>' +
    "</div>";
  document.body.appendChild(bar);
  var toggle = document.getElementById("select-toggle");

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#grid .card[data-image-id]")); }
  function ids() { return Array.from(selected); }

  function paint() {
    cards().forEach(function (card) {
      var on = selected.has(card.dataset.imageId);
      card.classList.toggle("selected", on);
      var box = card.querySelector(".pick");
      if (box) box.checked = on;
    });
    var selecting = root.classList.contains("selecting");
    bar.hidden = !selecting;
    document.getElementById("select-count").textContent = selected.size + " selected";
    bar.querySelectorAll('[data-act="similar"], [data-act="download"], [data-act="trash"]').forEach(function (b) { b.disabled = selected.size === 0; });
    if (toggle) {
      toggle.setAttribute("aria-pressed", String(selecting));
      toggle.textContent = selecting ? "Done" : "Select";
    }
  }
  function setSelecting(on) {
    root.classList.toggle("selecting", on);
    if (!on) { selected.clear(); anchor = null; }
    paint();
  }
  function setOne(id, on) { if (on) selected.add(id); else selected.delete(id); }
  // Shift: everything between the last card clicked and this one takes this one's new state.
  function choose(card, shift) {
    var id = card.dataset.imageId;
    var on = !selected.has(id);
    var list = cards();
    var from = anchor ? list.findIndex(function (c) { return c.dataset.imageId === anchor; }) : -1;
    if (shift && from >= 0) {
      var to = list.indexOf(card);
      var lo = Math.min(from, to), hi = Math.max(from, to);
      on = selected.has(anchor) || on;
      for (var i = lo; i <= hi; i++) setOne(list[i].dataset.imageId, on);
    } else {
      setOne(id, on);
    }
    anchor = id;
    root.classList.add("selecting");
    paint();
  }

  if (toggle) toggle.addEventListener("click", function () { setSelecting(!root.classList.contains("selecting")); });

  // The checkbox (shown on hover, focus, and always while selecting).
  document.addEventListener("click", function (e) {
    var box = e.target.closest && e.target.closest("#grid .pick");
    if (box) {
      // The box has toggled itself; choose() reaches the same state and extends it over a shift-click range.
      var card = box.closest(".card");
      choose(card, e.shiftKey);
      box.focus();
      return;
    }
    var thumb = e.target.closest && e.target.closest("#grid .card a");
    if (!thumb || e.button !== 0 || e.metaKey || e.ctrlKey) return;
    if (suppressClick) { suppressClick = false; e.preventDefault(); return; }
    if (root.classList.contains("selecting") || e.shiftKey) {
      e.preventDefault();
      choose(thumb.closest(".card"), e.shiftKey);
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && root.classList.contains("selecting") && !viewerOpen() && !document.querySelector("dialog[open]")) {
      setSelecting(false);
      if (toggle) toggle.focus();
    }
  });

  // Long press on a touch screen starts selecting.
  var pressTimer = null, pressAt = null, suppressClick = false;
  document.addEventListener("pointerdown", function (e) {
    var card = e.pointerType === "touch" && e.target.closest && e.target.closest("#grid .card");
    if (!card) return;
    pressAt = { x: e.clientX, y: e.clientY };
    clearTimeout(pressTimer);
    pressTimer = setTimeout(function () {
      pressTimer = null;
      suppressClick = true;  // the click that ends this press must not open the viewer
      choose(card, false);
      if (navigator.vibrate) navigator.vibrate(20);
    }, 500);
  });
  document.addEventListener("pointermove", function (e) {
    if (pressTimer && pressAt && Math.hypot(e.clientX - pressAt.x, e.clientY - pressAt.y) > 10) { clearTimeout(pressTimer); pressTimer = null; }
  });
  ["pointerup", "pointercancel"].forEach(function (ev) {
    document.addEventListener(ev, function () { clearTimeout(pressTimer); pressTimer = null; });
  });
  document.addEventListener("contextmenu", function (e) {
    if (suppressClick && e.target.closest && e.target.closest("#grid .card")) e.preventDefault();
  });

  document.addEventListener("grid:replaced", paint);

  // --- Bulk actions ------------------------------------------------------------
  bar.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-act]");
    if (!b) return;
    var act = b.dataset.act;
    if (act === "all") { cards().forEach(function (c) { selected.add(c.dataset.imageId); }); paint(); }
    else if (act === "clear") { setSelecting(false); }
    else if (act === "similar") { window.location.href = C.similarMany + "?pos=" + ids().join(","); }
    else if (act === "download") { download(); }
    else if (act === "trash") { trashSelected(); }
  });

  function download() {
    var list = ids();
    var max = parseInt(C.zipMax || "0", 10);
    if (max && list.length > max) {
      UI.toast(list.length + " images selected; a download holds at most " + max + ". Select fewer and download in parts.", null, { bad: true });
      return;
    }
    var url = C.zip + "?ids=" + list.join(",");
    fetch(url + "&check=1", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (!j.ok) { UI.toast(j.error, null, { bad: true }); return; }
        var a = document.createElement("a");
        a.href = url;
        a.download = "";
        document.body.appendChild(a);
        a.click();
        a.remove();
        UI.toast("Downloading a ZIP of " + UI.plural(j.count, "image") + ".", null, { ms: 5000 });
      })
      .catch(function (err) { UI.toast("Could not prepare the download: " + err.message, null, { bad: true }); });
  }

  function trashSelected() {
    var list = ids();
    if (!list.length) return;
    var what = list.length === 1 ? "this image" : "these " + list.length + " images";
    UI.confirm({ title: "Move " + what + " to the trash?", body: "They leave the gallery and its search results. You can undo this, or restore them from the trash later.", confirm: "Move to trash" })
      .then(function (yes) {
        if (!yes) return;
        return UI.post(C.bulkTrash, { image: list.join(",") }).then(function (j) {
          list.forEach(function (id) {
            var card = document.querySelector('#grid .card[data-image-id="' + id + '"]');
            if (card) card.remove();
          });
          var here = window.location.href;
          setSelecting(false);
          UI.offerUndo(j, j.message, function (restored) {
            if (!restored.length) return;
            var last = restored[restored.length - 1].id;
            UI.reloadGridUntil(here, function () { return !!document.querySelector('#grid .card[data-image-id="' + last + '"]'); });
          });
          UI.reloadGridUntil(here, function () { return true; }, 0);
        });
      })
      .catch(function (err) { UI.toast("Could not move them to the trash: " + err.message, null, { bad: true }); });
  }

  paint();
})();
