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

  // The account form: show only the chosen provider's settings. The <select> carries
  // data-provider-kinds (option value -> provider kind); each setting's input data-provider.
  function showProviderSettings(root) {
    root.querySelectorAll("select[data-provider-kinds]").forEach(function (select) {
      var kinds = JSON.parse(select.dataset.providerKinds || "{}");
      var kind = kinds[select.value] || "";
      (select.form || document).querySelectorAll("[data-provider]").forEach(function (input) {
        var box = input.closest("p") || input.parentElement;
        box.hidden = kind !== "" && input.dataset.provider !== kind;
      });
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-provider-kinds]")) {
      showProviderSettings(event.target.form || document);
    }
  });

  if (window.htmx) {
    window.htmx.onLoad(function (root) { drawBars(root); showProviderSettings(root); });
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      drawBars(document);
      showProviderSettings(document);
    });
  }
})();
