/* Behaviour every page shares, kept out of the HTML: the Content-Security-Policy
   (settings.py) runs scripts from our static files only — no inline <script>, no on…=""
   attributes — and refuses style="" attributes. Runs on load and after every HTMX swap. */
(function () {
  "use strict";

  // <span data-width="42"> in a .bar: the filled share, 0–100 (more is drawn full).
  // Set through element.style, which CSP allows, where style="width:…" would be blocked.
  function drawBars(root) {
    root.querySelectorAll("[data-width]").forEach(function (el) {
      var pct = Number(el.dataset.width);
      if (!isFinite(pct)) pct = 0;
      el.style.width = Math.max(0, Math.min(100, pct)) + "%";
    });
  }

  // <input data-select-on-click>: one click selects the whole value (a key to copy).
  document.addEventListener("click", function (event) {
    var field = event.target.closest && event.target.closest("[data-select-on-click]");
    if (field && typeof field.select === "function") field.select();
  });

  if (window.htmx) {
    window.htmx.onLoad(drawBars);
  } else {
    document.addEventListener("DOMContentLoaded", function () { drawBars(document); });
  }
})();
