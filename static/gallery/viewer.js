// The full-screen viewer of the gallery page. A click on a photo of the grid
// opens it over the page (a modal <dialog>: focus stays inside, Esc closes,
// focus goes back to the photo), and the address becomes the image's page, so
// Back closes it and the link works for anyone (the image page itself, which
// needs no script). Previous / next by buttons, arrow keys or a swipe; zoom by
// double-click, wheel, pinch or +/-; drag to pan when zoomed; download the
// original; the image's nearest neighbours in a strip, each a click away.
(function () {
  "use strict";

  var UI = window.imagesearchUI;
  var cfgEl = document.getElementById("gallery-config");
  if (!UI || !cfgEl) return;
  var C = cfgEl.dataset;
  var canEdit = C.canEdit === "1";
  var MAX_ZOOM = 8;

  var dlg = null, els = {};
  var seq = [], pos = 0, galleryUrl = null, opener = null, similarToken = 0;
  var inerted = [];
  // Grid pages beyond the loaded ones (URLs), so Previous / Next go on past the page's ends.
  var edges = { prev: null, next: null }, loadingEdge = false;
  var z = { s: 1, x: 0, y: 0 };

  function button(cls, label, text, title) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.setAttribute("aria-label", label);
    if (title) b.title = title;
    b.innerHTML = text;
    return b;
  }

  function build() {
    dlg = document.createElement("dialog");
    dlg.className = "viewer";
    dlg.id = "viewer";
    dlg.setAttribute("aria-labelledby", "viewer-title");
    dlg.innerHTML =
      '<div class="viewer-top">' +
      '  <div class="viewer-heading"><h2 id="viewer-title" class="viewer-title"></h2><span class="viewer-pos"></span></div>' +
      '  <div class="viewer-tools"></div>' +
      '</div>' +
      '<div class="viewer-stage"><img class="viewer-img" alt="" draggable="false"></div>' +
      '<section class="viewer-similar" aria-labelledby="viewer-similar-title">' +
      '  <h3 id="viewer-similar-title" class="viewer-similar-title">Similar</h3>' +
      '  <p class="viewer-similar-note" aria-live="polite"></p>' +
      '  <ul class="viewer-strip"></ul>' +
      '</section>';
    els.title = dlg.querySelector(".viewer-title");
    els.pos = dlg.querySelector(".viewer-pos");
    els.stage = dlg.querySelector(".viewer-stage");
    els.img = dlg.querySelector(".viewer-img");
    els.note = dlg.querySelector(".viewer-similar-note");
    els.strip = dlg.querySelector(".viewer-strip");
    var tools = dlg.querySelector(".viewer-tools");
    els.zoomOut = button("ghost small viewer-zoom-out", "Zoom out", "−", "Zoom out (−)");
    els.zoomIn = button("ghost small viewer-zoom-in", "Zoom in", "+", "Zoom in (+)");
    els.download = document.createElement("a");
    els.download.className = "button small ghost viewer-download";
    els.download.textContent = "Download";
    els.download.setAttribute("download", "");
    els.find = button("small ghost viewer-find", "Find similar", "Find similar");
    els.details = document.createElement("a");
    els.details.className = "button small ghost viewer-details";
    els.details.textContent = "Details";
    tools.appendChild(els.zoomOut); tools.appendChild(els.zoomIn); tools.appendChild(els.download);
    tools.appendChild(els.find); tools.appendChild(els.details);
    if (canEdit) {
      els.del = button("small ghost danger-text viewer-delete", "Move to trash", "Delete", "Move to trash (Delete)");
      tools.appendChild(els.del);
      els.del.addEventListener("click", trashCurrent);
    }
    els.close = button("small viewer-close", "Close viewer", "×", "Close (Esc)");
    tools.appendChild(els.close);
    els.prev = button("viewer-nav viewer-prev", "Previous image", "‹", "Previous (←)");
    els.next = button("viewer-nav viewer-next", "Next image", "›", "Next (→)");
    dlg.appendChild(els.prev); dlg.appendChild(els.next);

    els.close.addEventListener("click", function () { close(false); });
    els.prev.addEventListener("click", function () { step(-1); });
    els.next.addEventListener("click", function () { step(1); });
    els.zoomIn.addEventListener("click", function () { zoomAtCentre(z.s * 1.5); });
    els.zoomOut.addEventListener("click", function () { zoomAtCentre(z.s / 1.5); });
    els.find.addEventListener("click", function () { window.location.href = UI.withId(C.similarPage, current().id); });
    dlg.addEventListener("cancel", function (e) { e.preventDefault(); close(false); });
    dlg.addEventListener("keydown", onKey);
    els.img.addEventListener("load", function () { els.stage.classList.remove("loading"); });
    wireZoom();
    document.body.appendChild(dlg);
  }

  function current() { return seq[pos]; }

  function cardsOnPage(doc) {
    return Array.prototype.slice.call((doc || document).querySelectorAll("#grid .card[data-image-id]")).map(function (card) {
      return { id: card.dataset.imageId, name: card.dataset.name || "", state: card.dataset.state || "" };
    });
  }

  // The pager's links are relative ("?page=2") to the gallery's address, not to the image's shown meanwhile.
  function pageLink(doc, rel) {
    var a = doc.querySelector('#grid-region a[rel="' + rel + '"]');
    return a ? new URL(a.getAttribute("href"), galleryUrl).href : null;
  }

  function open(id, push) {
    if (!dlg) build();
    seq = cardsOnPage();
    pos = Math.max(0, seq.findIndex(function (it) { return it.id === String(id); }));
    if (!seq.length) return;
    opener = document.activeElement;
    galleryUrl = window.location.href;
    if (!push && history.state && history.state.gallery) galleryUrl = history.state.gallery;
    edges.prev = pageLink(document, "prev");
    edges.next = pageLink(document, "next");
    if (push) history.pushState({ viewer: current().id, gallery: galleryUrl }, "", UI.withId(C.imageUrl, current().id));
    document.documentElement.classList.add("viewer-open");
    // The modal already blocks the page; inert also takes it out of the accessibility tree.
    inerted = Array.prototype.filter.call(document.body.children, function (el) {
      return el !== dlg && !el.inert && !el.hasAttribute("aria-hidden") && el.tagName !== "SCRIPT" && el.tagName !== "DIALOG";
    });
    inerted.forEach(function (el) { el.inert = true; el.setAttribute("aria-hidden", "true"); });
    dlg.showModal();
    UI.rehomeToast();
    render();
    els.close.focus();
  }

  // fromHistory: Back (or Forward) already moved the address; otherwise step back to the gallery's entry.
  function close(fromHistory) {
    if (!dlg || !dlg.open) return;
    if (!fromHistory && history.state && history.state.viewer) { history.back(); return; }
    dlg.close();
    inerted.forEach(function (el) { el.inert = false; el.removeAttribute("aria-hidden"); });
    inerted = [];
    document.documentElement.classList.remove("viewer-open");
    els.img.removeAttribute("src");
    UI.rehomeToast();
    var shown = current();
    var card = shown && document.querySelector('#grid .card[data-image-id="' + shown.id + '"] a.thumb');
    var target = card || (opener && document.contains(opener) ? opener : null);
    if (target) target.focus();
  }

  function render() {
    var it = current();
    if (!it) return;
    resetZoom();
    els.title.textContent = it.name;
    els.pos.textContent = (pos + 1) + " of " + seq.length;
    els.stage.classList.add("loading");
    els.img.src = UI.withId(C.fileUrl, it.id);
    els.img.alt = it.name;
    els.download.href = UI.withId(C.fileUrl, it.id);
    els.download.setAttribute("download", it.name);
    els.download.setAttribute("aria-label", "Download the original of " + it.name);
    els.details.href = UI.withId(C.imageUrl, it.id);
    els.find.hidden = it.state !== "ready";
    els.prev.disabled = pos === 0 && !edges.prev;
    els.next.disabled = pos === seq.length - 1 && !edges.next;
    if (history.state && history.state.viewer && history.state.viewer !== it.id) {
      history.replaceState({ viewer: it.id, gallery: galleryUrl }, "", UI.withId(C.imageUrl, it.id));
    }
    [seq[pos - 1], seq[pos + 1]].forEach(function (n) { if (n) new Image().src = UI.withId(C.fileUrl, n.id); });
    loadSimilar(it);
  }

  function step(delta) {
    var to = pos + delta;
    if (to >= 0 && to < seq.length) { pos = to; render(); return; }
    var rel = delta > 0 ? "next" : "prev";
    if (!edges[rel] || loadingEdge) return;
    // Past the end of the loaded pages: fetch the neighbouring grid page and go on into it.
    loadingEdge = true;
    fetch(edges[rel], { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var more = cardsOnPage(doc).filter(function (it) { return !seq.some(function (x) { return x.id === it.id; }); });
        edges[rel] = pageLink(doc, rel);
        if (!more.length) { render(); return; }
        if (rel === "next") { pos = seq.length; seq = seq.concat(more); }
        else { seq = more.concat(seq); pos = more.length - 1; }
        render();
      })
      .catch(function () { edges[rel] = null; render(); })
      .then(function () { loadingEdge = false; });
  }

  function loadSimilar(it) {
    var token = ++similarToken;
    els.strip.textContent = "";
    if (it.state && it.state !== "ready") {
      els.note.textContent = "Similar images appear once this one is processed.";
      return;
    }
    els.note.textContent = "Looking for similar images…";
    fetch(UI.withId(C.similarApi, it.id) + "?k=12", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.status); return j; }); })
      .then(function (j) {
        if (token !== similarToken) return;
        els.note.textContent = j.results.length ? "" : "No similar images found yet.";
        j.results.forEach(function (m) {
          var li = document.createElement("li");
          var b = document.createElement("button");
          b.type = "button";
          b.className = "viewer-sim";
          b.dataset.imageId = m.id;
          b.setAttribute("aria-label", m.name + (m.band ? " (" + m.band + ")" : "") + ", distance " + m.distance.toFixed(3));
          b.title = m.name;
          var img = document.createElement("img");
          img.src = m.thumbnail;
          img.alt = "";
          img.width = 96; img.height = 72;
          img.loading = "lazy";
          b.appendChild(img);
          b.addEventListener("click", function () { jumpTo({ id: String(m.id), name: m.name, state: "ready" }); });
          li.appendChild(b);
          els.strip.appendChild(li);
        });
      })
      .catch(function (err) {
        if (token === similarToken) els.note.textContent = "Could not load similar images (" + err.message + ").";
      });
  }

  // A neighbour on this page is shown at its place in the page; one from another page is put
  // right after the current image, so Previous comes back to where the walk started.
  function jumpTo(item) {
    var at = seq.findIndex(function (x) { return x.id === item.id; });
    if (at >= 0) { pos = at; } else { seq.splice(pos + 1, 0, item); pos += 1; }
    render();
    els.close.focus();
  }

  function trashCurrent() {
    var it = current();
    UI.confirm({ title: "Move “" + it.name + "” to the trash?", body: "It leaves the gallery and its search results. You can undo this, or restore it from the trash later.", confirm: "Move to trash" })
      .then(function (yes) {
        if (!yes) return;
        return UI.post(UI.withId(C.deleteUrl, it.id), {}).then(function (j) {
          var at = pos;
          var card = document.querySelector('#grid .card[data-image-id="' + it.id + '"]');
          if (card) card.remove();
          seq.splice(at, 1);
          if (!seq.length) close(false);
          else { pos = Math.min(at, seq.length - 1); render(); }
          var back = galleryUrl;
          UI.offerUndo(j, j.message, function (restored) {
            if (!restored.length) return;
            var r = restored[0];
            if (dlg.open) seq.splice(Math.min(at, seq.length), 0, { id: String(r.id), name: r.name, state: "" });
            UI.reloadGridUntil(back, function () { return !!document.querySelector('#grid .card[data-image-id="' + r.id + '"]'); });
          });
          UI.reloadGridUntil(back, function () { return true; }, 0);
        });
      })
      .catch(function (err) { UI.toast("Could not move it to the trash: " + err.message, null, { bad: true }); });
  }

  // A modal dialog keeps focus out of the page, but Tab past its last control would reach the
  // browser's own controls: wrap it instead.
  function trapTab(e) {
    var items = Array.prototype.filter.call(dlg.querySelectorAll("button, a[href], [tabindex]"), function (el) {
      return !el.disabled && !el.hidden && el.offsetParent !== null && el.tabIndex >= 0;
    });
    if (!items.length) return;
    var first = items[0], last = items[items.length - 1];
    if (e.shiftKey && (document.activeElement === first || !dlg.contains(document.activeElement))) { last.focus(); e.preventDefault(); }
    else if (!e.shiftKey && (document.activeElement === last || !dlg.contains(document.activeElement))) { first.focus(); e.preventDefault(); }
  }

  function onKey(e) {
    if (e.key === "Tab") { trapTab(e); return; }
    if (e.target.closest && e.target.closest("input, select, textarea")) return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var k = e.key;
    if (k === "ArrowLeft") { step(-1); e.preventDefault(); }
    else if (k === "ArrowRight") { step(1); e.preventDefault(); }
    else if (k === "+" || k === "=") { zoomAtCentre(z.s * 1.5); e.preventDefault(); }
    else if (k === "-") { zoomAtCentre(z.s / 1.5); e.preventDefault(); }
    else if (k === "0") { resetZoom(); e.preventDefault(); }
    else if (k === "Delete" && canEdit) { trashCurrent(); e.preventDefault(); }
  }

  // --- Zoom and pan: transform-origin 0 0, so a point p of the picture sits at layout + t + s·p ---
  function apply() {
    els.img.style.transform = z.s === 1 && !z.x && !z.y ? "" : "translate(" + z.x + "px," + z.y + "px) scale(" + z.s + ")";
    els.stage.classList.toggle("zoomed", z.s > 1);
    if (els.zoomOut) { els.zoomOut.disabled = z.s <= 1; els.zoomIn.disabled = z.s >= MAX_ZOOM; }
    dlg.dataset.zoom = z.s.toFixed(2);
  }
  function resetZoom() { z.s = 1; z.x = 0; z.y = 0; apply(); }
  function zoomAt(cx, cy, s) {
    s = Math.max(1, Math.min(MAX_ZOOM, s));
    if (s === 1) { resetZoom(); return; }
    var r = els.img.getBoundingClientRect();
    var left = r.left - z.x, top = r.top - z.y;           // the picture's untransformed position
    var px = (cx - left - z.x) / z.s, py = (cy - top - z.y) / z.s;
    z.x = cx - left - s * px; z.y = cy - top - s * py; z.s = s;
    apply();
  }
  function zoomAtCentre(s) {
    var r = els.stage.getBoundingClientRect();
    zoomAt(r.left + r.width / 2, r.top + r.height / 2, s);
  }

  function wireZoom() {
    var stage = els.stage;
    var pointers = new Map(), start = null, pinch = null;
    stage.addEventListener("dblclick", function (e) {
      if (z.s > 1) resetZoom(); else zoomAt(e.clientX, e.clientY, 2.5);
    });
    stage.addEventListener("wheel", function (e) {
      e.preventDefault();
      zoomAt(e.clientX, e.clientY, z.s * Math.exp(-e.deltaY * 0.002));
    }, { passive: false });
    stage.addEventListener("pointerdown", function (e) {
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (stage.setPointerCapture) { try { stage.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointer */ } }
      if (pointers.size === 2) {
        var p = Array.from(pointers.values());
        pinch = { d: Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y) || 1, s: z.s };
        start = null;
      } else if (pointers.size === 1) {
        start = { x: e.clientX, y: e.clientY, tx: z.x, ty: z.y, type: e.pointerType };
      }
    });
    stage.addEventListener("pointermove", function (e) {
      if (!pointers.has(e.pointerId)) return;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (pinch && pointers.size >= 2) {
        var p = Array.from(pointers.values());
        var d = Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y);
        zoomAt((p[0].x + p[1].x) / 2, (p[0].y + p[1].y) / 2, pinch.s * d / pinch.d);
      } else if (start && z.s > 1) {
        z.x = start.tx + e.clientX - start.x; z.y = start.ty + e.clientY - start.y;
        apply();
      } else if (start && start.type !== "mouse") {
        els.img.style.transform = "translateX(" + (e.clientX - start.x) + "px)";  // the swipe follows the finger
      }
    });
    function end(e) {
      if (!pointers.has(e.pointerId)) return;
      pointers.delete(e.pointerId);
      if (pinch) { if (pointers.size < 2) pinch = null; start = null; return; }
      if (start && z.s === 1 && start.type !== "mouse") {
        var dx = e.clientX - start.x, dy = e.clientY - start.y;
        els.img.style.transform = "";
        if (Math.abs(dx) > 50 && Math.abs(dx) > 1.5 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
      }
      start = null;
    }
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
  }

  // --- Opening: a click on a photo of the grid (not while selecting) ----------
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("#grid a.thumb, #grid a.name");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    if (document.documentElement.classList.contains("selecting")) return;  // grid.js toggles the selection
    var card = a.closest(".card");
    e.preventDefault();
    open(card.dataset.imageId, true);
  });

  // Registered before app.js's listener: a viewer step of history is not a grid page to load.
  window.addEventListener("popstate", function (e) {
    var st = e.state || {};
    if (dlg && dlg.open && !st.viewer) { close(true); e.stopImmediatePropagation(); return; }
    if (st.viewer) {
      e.stopImmediatePropagation();
      if (document.querySelector('#grid .card[data-image-id="' + st.viewer + '"]')) open(st.viewer, false);
      else window.location.reload();
    }
  });

  window.imagesearchViewer = { open: function (id) { open(id, true); }, isOpen: function () { return !!(dlg && dlg.open); } };
})();
