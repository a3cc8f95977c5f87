// The header's theme switch: Auto (the browser's preference) → Light → Dark.
// The choice is kept in localStorage; base.html's inline head script applies it
// before the first paint, so a dark page never flashes light.
(function () {
  "use strict";
  var KEY = "imagesearch-theme";
  var ORDER = ["auto", "light", "dark"];
  var LABEL = { auto: "Auto", light: "Light", dark: "Dark" };
  var root = document.documentElement;

  function stored() {
    try { var t = localStorage.getItem(KEY); return ORDER.indexOf(t) >= 0 ? t : "auto"; } catch (e) { return "auto"; }
  }

  function apply(theme) {
    if (theme === "auto") delete root.dataset.theme; else root.dataset.theme = theme;
    try { if (theme === "auto") localStorage.removeItem(KEY); else localStorage.setItem(KEY, theme); } catch (e) { /* private mode: this page only */ }
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.dataset.theme = theme;
    button.querySelector("[data-theme-label]").textContent = LABEL[theme];
    button.setAttribute("aria-label", "Colour theme: " + LABEL[theme] + " (change)");
    button.title = theme === "auto" ? "Theme follows your browser; click for light" : "Theme: " + LABEL[theme].toLowerCase() + "; click to change";
  }

  var button = document.getElementById("theme-toggle");
  if (!button) return;
  button.hidden = false;
  apply(stored());
  button.addEventListener("click", function () {
    apply(ORDER[(ORDER.indexOf(stored()) + 1) % ORDER.length]);
  });
})();
