// The report chart: one line per key (queue, channel, agent, wrap-up code) of the chosen
// figure over the report's intervals, drawn with the vendored uPlot. The data comes
// from the page (data-chart), computed by the server; this script only draws it.
"use strict";

(() => {
  const box = document.getElementById("report-chart");
  const picker = document.getElementById("chart-figure");
  if (!box || !picker || typeof uPlot === "undefined") return;
  const data = JSON.parse(box.dataset.chart || "{}");
  const labels = data.labels || [];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
  let plot = null;

  function draw(figure) {
    const series = (data.series || {})[figure] || {};
    const keys = Object.keys(series).sort();
    const xs = labels.map((iso) => Date.parse(iso) / 1000);
    const columns = [xs, ...keys.map((k) => labels.map((iso) => series[k][iso] ?? null))];
    const opts = {
      width: Math.max(320, box.clientWidth || 800), height: 260,
      series: [{}, ...keys.map((k, i) => ({label: k, stroke: COLORS[i % COLORS.length],
                                           spanGaps: false}))],
      // the site's time zone, as the table (not the browser's)
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), data.timezone || "UTC"),
      // the report's whole period, however few intervals have contacts
      scales: {x: {time: true, range: [data.from, data.to]}},
      axes: [{}, {}],
    };
    if (plot) plot.destroy();
    plot = new uPlot(opts, columns, box);
  }

  picker.addEventListener("change", () => draw(picker.value));
  draw(picker.value);
})();
