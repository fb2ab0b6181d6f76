// Draws the backtest report's charts from the embedded result (the same object `--json`
// prints). Text from the data reaches the page only through chart labels and textContent,
// never as HTML. The series each chart holds are exposed on window.tradingdReport.
(function () {
  "use strict";
  const LC = window.LightweightCharts;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const BUY = "#1a7f4b";
  const SELL = "#c0392b";
  const LINE = "#2962ff";

  // Chart times are UTC seconds; the result's times are ISO-8601 with milliseconds.
  const seconds = (iso) => Date.parse(iso) / 1000;
  // Display only: an atomic amount as a float of whole units (tables show exact decimals).
  const units = (atomic, decimals) => Number(atomic) / Math.pow(10, decimals);

  function chart(el) {
    return LC.createChart(el, {
      autoSize: true,
      layout: { attributionLogo: true, textColor: "#1c2330", background: { color: "#ffffff" } },
      grid: { vertLines: { color: "#eef0f4" }, horzLines: { color: "#eef0f4" } },
      timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#dde1e8" },
      rightPriceScale: { borderColor: "#dde1e8" },
    });
  }

  // Room on both sides so the first and last markers' labels (and the logo) do not clip.
  function fit(c, count) {
    const margin = Math.max(3, Math.round(count * 0.06));
    c.timeScale().setVisibleLogicalRange({ from: -margin, to: count - 1 + margin });
  }

  function precisionFor(values) {
    const top = Math.max(...values.map(Math.abs), 0);
    if (!(top > 0)) return 2;
    return Math.min(10, Math.max(2, 4 - Math.floor(Math.log10(top))));
  }

  function priceFormat(precision) {
    return { type: "price", precision: precision, minMove: Math.pow(10, -precision) };
  }

  function equityChart(el, agent) {
    const points = agent.equity_curve.map((p) => ({
      time: seconds(p.ts),
      value: units(p.equity, agent.quote_decimals),
      customValues: { atomic: p.equity, ts: p.ts },
    }));
    const c = chart(el);
    const series = c.addSeries(LC.AreaSeries, {
      lineColor: LINE,
      topColor: "rgba(41, 98, 255, 0.25)",
      bottomColor: "rgba(41, 98, 255, 0.02)",
      lineWidth: 2,
      priceFormat: priceFormat(Math.min(agent.quote_decimals, precisionFor(points.map((p) => p.value)))),
    });
    series.setData(points);
    fit(c, points.length);
    return series;
  }

  function drawdownChart(el, agent) {
    const points = agent.equity_curve.map((p) => ({ time: seconds(p.ts), value: -p.drawdown_pct }));
    const c = chart(el);
    const series = c.addSeries(LC.AreaSeries, {
      lineColor: SELL,
      topColor: "rgba(192, 57, 43, 0.02)",
      bottomColor: "rgba(192, 57, 43, 0.3)",
      invertFilledArea: true,
      lineWidth: 1,
      priceFormat: priceFormat(2),
    });
    series.priceScale().applyOptions({ scaleMargins: { top: 0.1, bottom: 0.1 } });
    series.setData(points);
    fit(c, points.length);
    return series;
  }

  function priceChart(el, agent, prices, limit) {
    const points = prices.points.map((p) => ({ time: seconds(p.ts), value: p.price_usd }));
    const c = chart(el);
    const series = c.addSeries(LC.LineSeries, {
      color: "#404a5a",
      lineWidth: 1,
      priceFormat: priceFormat(precisionFor(points.map((p) => p.value))),
    });
    series.setData(points);
    // markers sit above and below the line; the bottom margin keeps them off the logo
    series.priceScale().applyOptions({ scaleMargins: { top: 0.15, bottom: 0.25 } });
    fit(c, points.length);
    // Positions are numbered over every fill; only the most recent `limit` fills on this token
    // are marked (data-markers; the page says so above the chart when it drops some).
    const numbers = new Map();
    const mine = [];
    for (const t of agent.trades) {
      if (!numbers.has(t.position_id)) numbers.set(t.position_id, numbers.size + 1);
      if (t.token === prices.token) mine.push(t);
    }
    const markers = [];
    for (const t of mine.slice(Math.max(0, mine.length - limit))) {
      const buy = t.side === "buy";
      markers.push({
        time: seconds(t.ts),
        position: buy ? "belowBar" : "aboveBar",
        shape: buy ? "arrowUp" : "arrowDown",
        color: buy ? BUY : SELL,
        text: "#" + numbers.get(t.position_id) + " " + (buy ? "buy " : "") + t.reason,
      });
    }
    markers.sort((a, b) => a.time - b.time);
    LC.createSeriesMarkers(series, markers);
    return { series: series, markers: markers };
  }

  const charts = data.agents.map(() => ({ equity: null, drawdown: null, prices: {} }));
  for (const el of document.querySelectorAll("[data-chart]")) {
    const i = Number(el.dataset.agent);
    const agent = data.agents[i];
    const kind = el.dataset.chart;
    if (kind === "equity") charts[i].equity = equityChart(el, agent);
    else if (kind === "drawdown") charts[i].drawdown = drawdownChart(el, agent);
    else if (kind === "price") {
      const prices = data.prices[Number(el.dataset.series)];
      charts[i].prices[prices.token] = priceChart(el, agent, prices, Number(el.dataset.markers));
    }
  }
  window.tradingdReport = { data: data, charts: charts };
})();
