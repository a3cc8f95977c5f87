// Shared pieces of the gallery and image pages: a confirm dialog (a real modal
// <dialog>, never window.confirm), the "Moved to trash — Undo" notice, and
// JSON POSTs with the page's CSRF token. Without scripts the same actions go
// through pages that ask first (the image's delete page).
(function () {
  "use strict";

  var UI = window.imagesearchUI = {};

  UI.csrf = function () {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  };

  // URL patterns are rendered for id 0 ("/i/0/file"): put the real id in.
  UI.withId = function (pattern, pk) { return pattern.replace("/0/", "/" + pk + "/"); };

  UI.post = function (url, fields) {
    var body = new FormData();
    Object.keys(fields || {}).forEach(function (k) {
      [].concat(fields[k]).forEach(function (v) { body.append(k, v); });
    });
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": UI.csrf(), Accept: "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.error || "The server answered " + r.status + ".");
        return j;
      });
    });
  };

  UI.plural = function (n, word) { return n + " " + word + (n === 1 ? "" : "s"); };

  // The open viewer, if any: a modal dialog makes the rest of the page inert,
  // so the notice has to live inside it to stay clickable.
  function host() { return document.querySelector("dialog.viewer[open]") || document.body; }

  var dialogCount = 0;
  // Ask before acting. Resolves true (confirmed) or false (cancelled, Esc).
  UI.confirm = function (opts) {
    return new Promise(function (resolve) {
      var id = "confirm-" + (++dialogCount);
      var dlg = document.createElement("dialog");
      dlg.className = "confirm-dialog";
      dlg.setAttribute("aria-labelledby", id + "-title");
      dlg.setAttribute("aria-describedby", id + "-body");
      var h = document.createElement("h2");
      h.id = id + "-title";
      h.textContent = opts.title;
      var p = document.createElement("p");
      p.id = id + "-body";
      p.textContent = opts.body || "";
      var row = document.createElement("div");
      row.className = "form-actions";
      var ok = document.createElement("button");
      ok.type = "button";
      ok.className = opts.danger === false ? "" : "danger";
      ok.textContent = opts.confirm || "OK";
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "ghost";
      cancel.textContent = "Cancel";
      row.appendChild(ok); row.appendChild(cancel);
      dlg.appendChild(h); dlg.appendChild(p); dlg.appendChild(row);
      var before = document.activeElement;
      var answer = false;
      ok.addEventListener("click", function () { answer = true; dlg.close(); });
      cancel.addEventListener("click", function () { dlg.close(); });
      dlg.addEventListener("close", function () {
        dlg.remove();
        if (before && before.focus && document.contains(before)) before.focus({ preventScroll: true });
        resolve(answer);
      });
      document.body.appendChild(dlg);
      dlg.showModal();
      ok.focus();
    });
  };

  // One notice at a time, bottom of the window, for ~10 s (longer while hovered or focused).
  var toastBox = null, toastTimer = null;
  function toastElement() {
    if (!toastBox) {
      toastBox = document.createElement("div");
      toastBox.className = "toast";
      toastBox.id = "toast";
      toastBox.setAttribute("role", "status");
      toastBox.setAttribute("aria-live", "polite");
      toastBox.hidden = true;
      toastBox.addEventListener("mouseenter", function () { clearTimeout(toastTimer); });
      toastBox.addEventListener("focusin", function () { clearTimeout(toastTimer); });
      toastBox.addEventListener("mouseleave", function () { arm(4000); });
    }
    var where = host();
    if (toastBox.parentNode !== where) where.appendChild(toastBox);
    return toastBox;
  }
  function arm(ms) {
    clearTimeout(toastTimer);
    toastTimer = setTimeout(UI.hideToast, ms);
  }
  UI.hideToast = function () { clearTimeout(toastTimer); if (toastBox) { toastBox.hidden = true; toastBox.textContent = ""; } };
  // Keep the notice reachable when the viewer opens or closes.
  UI.rehomeToast = function () { if (toastBox && !toastBox.hidden) toastElement(); };

  UI.toast = function (message, action, opts) {
    var box = toastElement();
    box.textContent = "";
    box.classList.toggle("toast-bad", !!(opts && opts.bad));
    var text = document.createElement("span");
    text.className = "toast-text";
    text.textContent = message;
    box.appendChild(text);
    if (action) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "toast-action";
      b.textContent = action.label;
      b.addEventListener("click", function () { b.disabled = true; action.run(); });
      box.appendChild(b);
    }
    var x = document.createElement("button");
    x.type = "button";
    x.className = "toast-close";
    x.setAttribute("aria-label", "Dismiss");
    x.textContent = "×";
    x.addEventListener("click", UI.hideToast);
    box.appendChild(x);
    box.hidden = false;
    arm((opts && opts.ms) || 10000);
  };

  // After a move to the trash: the notice with Undo, which restores every row of `result.trashed`.
  // onRestored(restored rows [{trash_id, id, url, name, ...}], answer) runs after an undo.
  UI.offerUndo = function (result, message, onRestored) {
    UI.toast(message.replace(/\.$/, "") + " — ", {
      label: "Undo",
      run: function () {
        UI.post(result.undo, { item: result.trashed })
          .then(function (j) {
            UI.toast(j.message, null, { ms: 6000, bad: j.restored.length === 0 });
            if (onRestored) onRestored(j.restored, j);
          })
          .catch(function (err) { UI.toast("Could not undo: " + err.message + " The images are in the trash.", null, { bad: true }); });
      }
    });
  };

  // Reload the grid until `done()` holds (a refresh already running is not restarted by app.js).
  UI.reloadGridUntil = function (url, done, tries) {
    if (!window.imagesearch) return;
    tries = tries === undefined ? 5 : tries;
    window.imagesearch.reloadGrid(url).then(function () {
      if (!done() && tries > 0) setTimeout(function () { UI.reloadGridUntil(url, done, tries - 1); }, 400);
    });
  };

  // --- The image page: "Move to trash" asks, then offers Undo ------------------
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[data-delete-image]");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    var name = a.dataset.name;
    UI.confirm({ title: "Move “" + name + "” to the trash?", body: "It leaves the gallery and its search results. You can undo this, or restore it from the trash later.", confirm: "Move to trash" })
      .then(function (yes) {
        if (!yes) return;
        return UI.post(a.href, {}).then(function (j) {
          var page = document.querySelector(".image-page");
          if (page) {
            page.textContent = "";
            var note = document.createElement("div");
            note.className = "panel trashed-note";
            note.id = "trashed-note";
            var p = document.createElement("p");
            p.textContent = "“" + name + "” is in the trash. ";
            var back = document.createElement("a");
            back.href = a.dataset.galleryUrl;
            back.textContent = "Back to the gallery";
            p.appendChild(back);
            note.appendChild(p);
            page.appendChild(note);
          }
          UI.offerUndo(j, j.message, function (restored) {
            if (restored.length) window.location.href = restored[0].url;
          });
        });
      })
      .catch(function (err) { UI.toast("Could not move it to the trash: " + err.message, null, { bad: true }); });
  });
})();
