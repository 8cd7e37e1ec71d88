/* Dashboard charts (Chart.js). Data comes from json_script blocks next to each canvas:
   money arrives as strings and becomes a Number here only to be drawn. Runs on page load and
   again after every HTMX swap (htmx.onLoad), destroying the charts it replaces. */
(function () {
  "use strict";

  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

  function num(value) {
    return value === null || value === undefined ? null : Number(value);
  }

  function money(value) {
    var n = Number(value);
    // Tiny amounts keep their digits instead of reading as $0.00.
    if (n !== 0 && Math.abs(n) < 0.01) return "$" + n.toPrecision(2);
    return usd.format(n);
  }

  // A fill pattern per provider, so the charts read without colour.
  function pattern(color, kind) {
    if (!kind || kind === "none") return color;
    var c = document.createElement("canvas");
    c.width = c.height = 10;
    var g = c.getContext("2d");
    g.fillStyle = color;
    g.fillRect(0, 0, 10, 10);
    g.strokeStyle = "rgba(255,255,255,0.75)";
    g.fillStyle = "rgba(255,255,255,0.75)";
    g.lineWidth = 1.5;
    g.beginPath();
    if (kind === "diagonal") { g.moveTo(0, 10); g.lineTo(10, 0); g.moveTo(-2, 2); g.lineTo(2, -2); g.moveTo(8, 12); g.lineTo(12, 8); }
    else if (kind === "horizontal") { g.moveTo(0, 5); g.lineTo(10, 5); }
    else if (kind === "vertical") { g.moveTo(5, 0); g.lineTo(5, 10); }
    else if (kind === "cross") { g.moveTo(0, 0); g.lineTo(10, 10); g.moveTo(10, 0); g.lineTo(0, 10); }
    else if (kind === "zigzag") { g.moveTo(0, 7); g.lineTo(2.5, 3); g.lineTo(5, 7); g.lineTo(7.5, 3); g.lineTo(10, 7); }
    else if (kind === "dots") { g.arc(5, 5, 1.8, 0, 2 * Math.PI); g.fill(); }
    g.stroke();
    return g.createPattern(c, "repeat");
  }

  function readData(canvas) {
    var el = document.getElementById(canvas.dataset.source);
    return el ? JSON.parse(el.textContent) : null;
  }

  var builders = {
    daily: function (data) {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: data.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data.map(num),
              backgroundColor: pattern(ds.color, ds.pattern),
              borderColor: ds.color,
              borderWidth: 1,
            };
          }),
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 12,
              callback: function (v) { return this.getLabelForValue(v).slice(5); } } },
            y: { stacked: true, beginAtZero: true, ticks: { callback: function (v) { return money(v); } } },
          },
          plugins: {
            legend: { position: "bottom" },
            tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + money(c.raw); } } },
          },
        },
      };
    },
    doughnut: function (data) {
      return {
        type: "doughnut",
        data: {
          labels: data.labels,
          datasets: [{
            data: data.data.map(num),
            backgroundColor: data.colors.map(function (c, i) { return pattern(c, data.patterns[i]); }),
            borderColor: "#fff",
            borderWidth: 2,
          }],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          plugins: {
            // Labels carry name, amount and share, so the legend alone tells the story.
            legend: { position: "bottom" },
            tooltip: { callbacks: { label: function (c) { return c.label; } } },
          },
        },
      };
    },
    forecast: function (data) {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: [
            { type: "line", label: "Spent (cumulative)", data: data.actual.map(num),
              borderColor: "#1d2330", backgroundColor: "#1d2330", pointRadius: 2, borderWidth: 2, spanGaps: false },
            { type: "line", label: "Projected", data: data.projected.map(num),
              borderColor: "#2457d6", backgroundColor: "#2457d6", borderDash: [6, 4], pointRadius: 0,
              pointStyle: "line", borderWidth: 2 },
            { type: "bar", label: "p10–p90 range", data: data.range.map(function (r) { return r ? [num(r[0]), num(r[1])] : null; }),
              backgroundColor: pattern("#9db4ee", "diagonal"), borderColor: "#2457d6", borderWidth: 1,
              barPercentage: 1, categoryPercentage: 1 },
          ],
        },
        options: {
          maintainAspectRatio: false,
          animation: false,
          scales: {
            x: { ticks: { maxRotation: 0, autoSkipPadding: 12, callback: function (v) { return this.getLabelForValue(v).slice(8); } } },
            y: { beginAtZero: true, ticks: { callback: function (v) { return money(v); } } },
          },
          plugins: {
            legend: { position: "bottom", labels: { usePointStyle: true } },
            tooltip: { callbacks: { label: function (c) {
              if (Array.isArray(c.raw)) return c.dataset.label + ": " + money(c.raw[0]) + " – " + money(c.raw[1]);
              return c.dataset.label + ": " + money(c.raw);
            } } },
          },
        },
      };
    },
  };

  function init(root) {
    if (typeof window.Chart === "undefined") return;
    var scope = root && root.querySelectorAll ? root : document;
    var canvases = scope.querySelectorAll("canvas[data-chart]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      var existing = window.Chart.getChart(canvas);
      if (existing) existing.destroy();
      var data = readData(canvas);
      var build = builders[canvas.dataset.chart];
      if (data && build) new window.Chart(canvas, build(data));
    });
  }

  // Charts on content HTMX is about to replace are destroyed, not leaked.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail && e.detail.target;
    if (!target || typeof window.Chart === "undefined") return;
    Array.prototype.forEach.call(target.querySelectorAll("canvas[data-chart]"), function (c) {
      var chart = window.Chart.getChart(c);
      if (chart) chart.destroy();
    });
  });

  if (window.htmx) {
    window.htmx.onLoad(init);
  } else {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  }
})();
