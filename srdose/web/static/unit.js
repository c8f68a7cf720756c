/* The unit page's charts, drawn with the vendored Chart.js (3.9, UMD build: window.Chart) from
 * <page>/charts.json (srdose.store.unitpage.unit_charts). Loaded as a file, never inline: the
 * app's Content-Security-Policy forbids inline scripts.
 *
 * Each canvas gets data-points="N" (points drawn) and data-rendered="1" once its chart exists;
 * a canvas without data is hidden behind a message and gets data-points="0", data-rendered="0".
 */
(function () {
  "use strict";

  var COLOURS = ["#1f5fa8", "#d1495b", "#2e8b57", "#e08e0b", "#7b4fa0", "#00808c", "#8c564b", "#555555"];

  function chartsUrl() {
    var holder = document.querySelector("[data-charts-url], [data-charts]");
    if (holder) {
      return holder.getAttribute("data-charts-url") || holder.getAttribute("data-charts");
    }
    // /units/<serial> and /units/<serial>/ alike
    return window.location.pathname.replace(/\/+$/, "") + "/charts.json";
  }

  function status(text) {
    var el = document.getElementById("charts-status");
    if (!el) {
      // the page may not have one: put it before the first chart
      var first = document.querySelector("canvas[id^='chart-']");
      if (!first || !text) {
        return;
      }
      el = document.createElement("p");
      el.id = "charts-status";
      var box = document.getElementById("unit-charts") || first.parentNode;
      box.insertBefore(el, box.firstChild);
    }
    el.textContent = text;
  }

  function xy(pairs) {
    return (pairs || []).map(function (p) { return { x: p[0], y: p[1] }; });
  }

  function count(datasets) {
    return datasets.reduce(function (n, d) { return n + (d.countsAsPoints === false ? 0 : d.data.length); }, 0);
  }

  function noData(canvas, message) {
    canvas.setAttribute("data-points", "0");
    canvas.setAttribute("data-rendered", "0");
    canvas.hidden = true;
    var p = document.createElement("p");
    p.className = "no-data";
    p.id = canvas.id + "-empty";
    p.textContent = message;
    canvas.parentNode.insertBefore(p, canvas);
  }

  /* Draw one chart; points counts the data points (not reference lines). */
  function draw(id, config, points, emptyMessage) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return null;
    }
    if (!points) {
      noData(canvas, emptyMessage);
      return null;
    }
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: true, aspectRatio: 2 },
                                   config.options || {});
    var chart = new window.Chart(canvas, config);
    canvas.setAttribute("data-points", String(points));
    canvas.setAttribute("data-rendered", "1");
    return chart;
  }

  function axis(title, extra) {
    return Object.assign({ type: "linear", title: { display: true, text: title } }, extra || {});
  }

  function scatterSet(label, data, colour, extra) {
    return Object.assign({ label: label, data: data, backgroundColor: colour + "99", borderColor: colour,
                           pointRadius: 2, showLine: false }, extra || {});
  }

  function lineSet(label, data, colour, extra) {
    return Object.assign({ label: label, data: data, borderColor: colour, backgroundColor: colour,
                           pointRadius: 0, showLine: true, borderWidth: 2, countsAsPoints: false }, extra || {});
  }

  function sampledNote(d) {
    return d.mgd.sampled ? " (a sample of " + d.max_points + " of " + d.events + " events)" : "";
  }

  function mgdChart(d) {
    var m = d.mgd;
    var sets = [
      scatterSet("MGD recalculated", xy(m.recalc), COLOURS[0]),
      scatterSet("AGD reported", xy(m.reported), COLOURS[1], { pointStyle: "triangle" })
    ];
    var points = count(sets);
    var thick = m.recalc.concat(m.reported).map(function (p) { return p[0]; });
    var lo = Math.min.apply(null, thick.concat([20])), hi = Math.max.apply(null, thick.concat([90]));
    if (m.eu && m.eu.rows.length) {
      sets.push(lineSet("EU acceptable (" + m.eu.status + ")",
                        m.eu.rows.map(function (r) { return { x: r.thickness_mm, y: r.acceptable_mgy }; }), "#b22222",
                        { borderDash: [6, 3] }));
      sets.push(lineSet("EU achievable (" + m.eu.status + ")",
                        m.eu.rows.map(function (r) { return { x: r.thickness_mm, y: r.achievable_mgy }; }), "#228b22",
                        { borderDash: [2, 3] }));
    }
    if (m.drl) {
      sets.push(lineSet("DRL " + m.drl.mgy + " mGy" + (m.drl.source ? " (" + m.drl.source + ")" : ""),
                        [{ x: lo, y: m.drl.mgy }, { x: hi, y: m.drl.mgy }], "#000000"));
    }
    draw("chart-mgd", {
      type: "scatter",
      data: { datasets: sets },
      options: {
        scales: { x: axis("compressed thickness (mm)"), y: axis("dose (mGy)", { beginAtZero: true }) },
        plugins: { title: { display: true, text: "MGD against compressed thickness" + sampledNote(d) } }
      }
    }, points, "No recalculated or reported doses with a thickness for this unit.");
  }

  var DAY_MS = 86400000;

  function dayNumber(iso) {
    return Date.parse(iso + "T00:00:00Z") / DAY_MS;
  }

  function dayLabel(n) {
    return new Date(n * DAY_MS).toISOString().slice(0, 10);
  }

  function ratioChart(d) {
    var r = d.ratio;
    var pts = r.points.map(function (p) { return { x: dayNumber(p.date), y: p.median, n: p.n, flags: p.flags, date: p.date }; });
    var ok = pts.filter(function (p) { return !p.flags.length; });
    var bad = pts.filter(function (p) { return p.flags.length; });
    var sets = [
      scatterSet(r.period === "week" ? "weekly median" : "daily median", ok, COLOURS[0],
                 { showLine: false, pointRadius: 3 }),
      scatterSet("signal (Western Electric rules)", bad, "#d00000", { pointRadius: 5, pointStyle: "rectRot" })
    ];
    var points = pts.length;
    if (pts.length && r.centre !== null) {
      var x0 = pts[0].x, x1 = pts[pts.length - 1].x;
      sets.push(lineSet("centre " + r.centre, [{ x: x0, y: r.centre }, { x: x1, y: r.centre }], "#333333"));
      sets.push(lineSet("+3σ", [{ x: x0, y: r.ucl }, { x: x1, y: r.ucl }], "#b22222", { borderDash: [6, 3] }));
      sets.push(lineSet("−3σ", [{ x: x0, y: r.lcl }, { x: x1, y: r.lcl }], "#b22222", { borderDash: [6, 3] }));
    }
    var title = "Recalculated / reported MGD, " + (r.period === "week" ? "weekly" : "daily") + " median" +
      (r.drift ? " — drift signalled from " + r.first_signal : "");
    draw("chart-ratio", {
      type: "scatter",
      data: { datasets: sets },
      options: {
        scales: {
          x: axis(r.period === "week" ? "week starting" : "study date", { ticks: { callback: dayLabel } }),
          y: axis("ratio")
        },
        plugins: {
          title: { display: true, text: title },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var p = ctx.raw;
                if (p.date === undefined) {
                  return ctx.dataset.label;
                }
                return p.date + ": " + p.y + " (" + p.n + " events)" + (p.flags.length ? " " + p.flags.join(", ") : "");
              }
            }
          }
        }
      }
    }, points, r.reason || ("No " + (r.period === "week" ? "week" : "day") + " with at least " + r.min_events +
                            " recalculated events yet."));
  }

  function seriesChart(id, series, yTitle, title, empty, d) {
    var names = Object.keys(series || {}).sort();
    var sets = names.map(function (name, i) { return scatterSet(name, xy(series[name]), COLOURS[i % COLOURS.length]); });
    draw(id, {
      type: "scatter",
      data: { datasets: sets },
      options: {
        scales: { x: axis("compressed thickness (mm)"), y: axis(yTitle) },
        plugins: { title: { display: true, text: title + sampledNote(d) } }
      }
    }, count(sets), empty);
  }

  function monthlyChart(d) {
    var rows = d.monthly || [];
    var labels = rows.map(function (r) { return r.month; });
    function col(name) { return rows.map(function (r) { return r[name]; }); }
    var sets = [
      { label: "MGD recalculated (median)", data: col("mgd_median"), borderColor: COLOURS[0], backgroundColor: COLOURS[0], yAxisID: "y" },
      { label: "AGD reported (median)", data: col("agd_median"), borderColor: COLOURS[1], backgroundColor: COLOURS[1], yAxisID: "y" },
      { label: "ratio (median)", data: col("ratio_median"), borderColor: COLOURS[2], backgroundColor: COLOURS[2],
        borderDash: [4, 3], yAxisID: "y1" }
    ];
    draw("chart-monthly", {
      type: "line",
      data: { labels: labels, datasets: sets },
      options: {
        scales: {
          x: { type: "category", title: { display: true, text: "month" } },
          y: axis("dose (mGy)", { position: "left", beginAtZero: true }),
          y1: axis("ratio", { position: "right", grid: { drawOnChartArea: false } })
        },
        plugins: { title: { display: true, text: "Monthly medians" } }
      }
    }, rows.length, "No months with doses for this unit.");
  }

  function fitsChart(d) {
    var sets = [];
    var physics = d.physics || [];
    // the latest physics set: the one current events use
    var latest = physics.length ? physics[physics.length - 1] : null;
    var points = 0;
    if (latest) {
      latest.beams.forEach(function (b, i) {
        var colour = COLOURS[i % COLOURS.length];
        var name = b.target + "/" + b.filter + (b.filter_mm ? " " + b.filter_mm + " mm" : "");
        var out = b.points.map(function (p) { return { x: p.kv, y: p.output }; });
        var hvl = b.points.map(function (p) { return { x: p.kv, y: p.hvl }; });
        points += out.length + hvl.length;
        sets.push(scatterSet(name + " output", out, colour, { yAxisID: "y", pointRadius: 4 }));
        sets.push(lineSet(name + " output fit", xy(b.output_fit.curve), colour, { yAxisID: "y" }));
        sets.push(scatterSet(name + " HVL", hvl, colour, { yAxisID: "y1", pointRadius: 4, pointStyle: "triangle" }));
        sets.push(lineSet(name + " HVL fit", xy(b.hvl_fit.curve), colour, { yAxisID: "y1", borderDash: [4, 3] }));
      });
    }
    draw("chart-fits", {
      type: "scatter",
      data: { datasets: sets },
      options: {
        scales: {
          x: axis("tube voltage (kV)"),
          y: axis("output (µGy/mAs at " + (latest ? latest.d_ref_mm : "?") + " mm)", { position: "left" }),
          y1: axis("HVL (mm Al)", { position: "right", grid: { drawOnChartArea: false } })
        },
        plugins: { title: { display: true, text: latest ? "Physics data valid from " + latest.valid_from + " and their fits" : "" } }
      }
    }, points, "No physics data for this unit: its doses use the RDSR's own values.");
  }

  function render(d) {
    mgdChart(d);
    ratioChart(d);
    seriesChart("chart-kv", d.kv.series, "tube voltage (kV)", "kV and target/filter against thickness (AEC)",
                "No exposures with kV and thickness for this unit.", d);
    seriesChart("chart-force", d.force.series, "compression force (N)", "Compression force against thickness per view",
                "This unit reports no compression force.", d);
    monthlyChart(d);
    fitsChart(d);
    // the server may keep a unit's charts a while ([web] cache_seconds): say how fresh they are
    status(d.as_of ? "Charts as of " + d.as_of + "." : "");
  }

  function start() {
    if (!document.querySelector("canvas[id^='chart-']")) {
      return;
    }
    if (typeof window.Chart !== "function") {
      status("The charting library did not load; the tables below hold the same data.");
      return;
    }
    status("Loading charts…");
    fetch(chartsUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(render)
      .catch(function (err) { status("The charts could not be loaded (" + err.message + ")."); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
