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

  // The budget form: show only the chosen scope's target pickers. The scope <select>
  // carries data-scope-fields (scope -> its field names); each field sits in p.field-<name>.
  // Without this script every picker shows, and the server ignores the other scopes' ones.
  function showScopeFields(root) {
    root.querySelectorAll("select[data-scope-fields]").forEach(function (select) {
      var table = JSON.parse(select.dataset.scopeFields || "{}");
      var shown = table[select.value] || [];
      var all = [];
      Object.keys(table).forEach(function (scope) { all = all.concat(table[scope]); });
      all.forEach(function (name) {
        (select.form || document).querySelectorAll("p.field-" + name).forEach(function (box) {
          box.hidden = shown.indexOf(name) === -1;
        });
      });
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-scope-fields]")) {
      showScopeFields(event.target.form || document);
    }
  });

  // The export form: the raw-history notice (data-raw-history-start="YYYY-MM-DD") shows while
  // the chosen start day is earlier and the source may hold estimated records (only those are
  // removed). ISO dates compare as strings. Without this script the page's line above the
  // form still says where the raw history starts.
  function showRawHistoryNotices(root) {
    root.querySelectorAll("[data-raw-history-start]").forEach(function (notice) {
      var form = notice.closest("form") || document;
      var start = form.querySelector("input[name=start]");
      var source = form.querySelector("[name=source]");
      if (!start) return;
      var settled = source && source.value !== "" && source.value !== "estimated";
      notice.hidden = !(start.value && start.value < notice.dataset.rawHistoryStart) || settled;
    });
  }
  document.addEventListener("input", function (event) {
    if (event.target.form && event.target.form.querySelector("[data-raw-history-start]")) {
      showRawHistoryNotices(event.target.form);
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.form && event.target.form.querySelector("[data-raw-history-start]")) {
      showRawHistoryNotices(event.target.form);
    }
  });

  if (window.htmx) {
    window.htmx.onLoad(function (root) {
      drawBars(root);
      showProviderSettings(root);
      showScopeFields(root);
      showRawHistoryNotices(root);
    });
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      drawBars(document);
      showProviderSettings(document);
      showScopeFields(document);
      showRawHistoryNotices(document);
    });
  }
})();
