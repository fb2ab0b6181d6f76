// The two charts, drawn by the vendored TradingView Lightweight Charts (window.LightweightCharts,
// loaded before this module). Its attribution logo stays on, as its licence asks.

const LWC = window.LightweightCharts;
const COLORS = { entry: "#4f8cff", stop: "#ff5c5c", tp: "#33c48d", peak: "#a0a6b4" };
const AGENT_COLORS = ["#4f8cff", "#f5a623", "#33c48d", "#c678dd", "#ff5c5c", "#56b6c2"];
// A chart keeps the bar spacing of its last fit: fitted on 2 points, new ones would scroll the
// first off at ~300 px each. So a growing series is fitted on each point until it holds this
// many, then scrolls with the time as usual.
const FIT_UNTIL = 300;
const TITLE_CHARS = 32; // an equity line's label: the agent's name, cut beyond this

function baseOptions() {
  return {
    autoSize: true,
    layout: {
      attributionLogo: true,
      background: { type: "solid", color: "#161a23" },
      textColor: "#c9cfdb",
    },
    grid: { vertLines: { color: "#222834" }, horzLines: { color: "#222834" } },
    timeScale: { timeVisible: true, secondsVisible: true },
    rightPriceScale: { borderColor: "#2c3340" },
  };
}

/** Decimals enough to tell a price's moves apart (1.2345 vs 0.00001234). */
function precisionFor(value) {
  if (!(value > 0)) return 4;
  return Math.min(12, Math.max(2, 4 - Math.floor(Math.log10(value))));
}

/** The selected position's token: its live price, and entry, stop, take-profit and peak as
 * horizontal price lines that move when the position changes. */
export class PriceChart {
  constructor(container) {
    this.chart = LWC.createChart(container, baseOptions());
    this.levels = []; // the prices of the lines drawn, kept in view by the autoscale below
    this.series = this.chart.addSeries(LWC.LineSeries, {
      color: "#e6e9ef",
      lineWidth: 2,
      autoscaleInfoProvider: (original) => this.autoscale(original()),
    });
    this.token = null;
    this.lines = [];
    this.lineKey = "";
    this.lastTime = null;
  }

  /** Show `token`'s points; `position` gives the levels (null: price only). */
  show(token, points, position) {
    if (token !== this.token) {
      this.token = token;
      const p = points.length ? points[points.length - 1].value : null;
      const precision = precisionFor(p);
      this.series.applyOptions({
        priceFormat: { type: "price", precision, minMove: 10 ** -precision },
      });
      this.series.setData(points.map((x) => ({ time: x.time, value: x.value })));
      this.lastTime = points.length ? points[points.length - 1].time : null;
      this.chart.timeScale().fitContent();
      this.lineKey = "";
    } else if (points.length) {
      const last = points[points.length - 1];
      if (this.lastTime === null || last.time >= this.lastTime) {
        this.series.update({ time: last.time, value: last.value });
        this.lastTime = last.time;
        if (points.length <= FIT_UNTIL) this.chart.timeScale().fitContent();
      }
    }
    this.setLevels(position);
  }

  /** The price range widened to the entry, stop and take-profit, so a stop far below the
   * current price is still drawn rather than off the chart. */
  autoscale(range) {
    if (!range || !range.priceRange || !this.levels.length) return range;
    const { minValue, maxValue } = range.priceRange;
    return {
      ...range,
      priceRange: {
        minValue: Math.min(minValue, ...this.levels),
        maxValue: Math.max(maxValue, ...this.levels),
      },
    };
  }

  setLevels(position) {
    const levels = position
      ? [
          ["entry", position.entry_price_usd],
          ["stop", position.stop_price_usd],
          ["tp", position.next_take_profit_usd],
          ["peak", position.peak_price_usd],
        ].filter(([, price]) => typeof price === "number" && price > 0)
      : [];
    const key = JSON.stringify(levels);
    if (key === this.lineKey) return; // unchanged: no redraw
    this.lineKey = key;
    this.levels = levels.map(([, price]) => price);
    for (const line of this.lines) this.series.removePriceLine(line);
    this.lines = levels.map(([name, price]) =>
      this.series.createPriceLine({
        price,
        color: COLORS[name],
        lineWidth: 1,
        lineStyle: name === "peak" ? LWC.LineStyle.Dotted : LWC.LineStyle.Dashed,
        axisLabelVisible: true,
        title: name === "tp" ? "take-profit" : name,
      }),
    );
  }

  clear() {
    this.token = null;
    this.series.setData([]);
    this.setLevels(null);
  }
}

/** One line per agent: its equity in its quote asset over the time this page was open. */
export class EquityChart {
  constructor(container) {
    this.chart = LWC.createChart(container, baseOptions());
    this.series = new Map(); // agent id -> {series, lastTime}
  }

  update(agentId, name, points) {
    // the label sits on the chart, over the line: a long name would cover it
    const title = name.length > TITLE_CHARS ? `${name.slice(0, TITLE_CHARS - 1)}…` : name;
    let entry = this.series.get(agentId);
    if (!entry) {
      const color = AGENT_COLORS[this.series.size % AGENT_COLORS.length];
      const series = this.chart.addSeries(LWC.LineSeries, {
        color,
        lineWidth: 2,
        title,
        priceFormat: { type: "price", precision: 4, minMove: 0.0001 },
      });
      entry = { series, lastTime: null, title };
      this.series.set(agentId, entry);
    } else if (entry.title !== title) {
      entry.series.applyOptions({ title }); // the agent was renamed
      entry.title = title;
    }
    const last = points[points.length - 1];
    if (!last || last.time === entry.lastTime) return;
    if (entry.lastTime === null) {
      entry.series.setData(points.map((x) => ({ time: x.time, value: x.value })));
      this.chart.timeScale().fitContent();
    } else {
      entry.series.update({ time: last.time, value: last.value });
      if (points.length <= FIT_UNTIL) this.chart.timeScale().fitContent();
    }
    entry.lastTime = last.time;
  }

  /** Each line's label as the chart draws it (agent id -> title). */
  titles() {
    return Object.fromEntries([...this.series].map(([id, e]) => [id, e.series.options().title]));
  }

  /** Agents gone from the daemon lose their line. */
  retain(agentIds) {
    for (const [id, entry] of this.series) {
      if (!agentIds.has(id)) {
        this.chart.removeSeries(entry.series);
        this.series.delete(id);
      }
    }
  }
}
