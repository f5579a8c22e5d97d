/* analyze_sales as a horizontal bar chart in inline SVG (no library, nothing fetched): one row
 * per group, its label above a bar as long as its share of the largest revenue, the revenue and
 * units after the bar, and the totals in a caption. Bars are sized in percent of the chart's
 * width and text in pixels, so the chart fills a phone or a desktop card and stays readable. */

import { h, plain, plural } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const ROW = 38; // px per group: a label line and a bar
const BAR = 14;
const MAX_BAR_PCT = 62; // room after the longest bar for its numbers
const MAX_GROUPS = 50;

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, plain(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const count = (v, one) => plural(num(v), one);

/* A <figure> with the chart and its totals; `money` formats revenue. */
export function salesChart(report, money) {
  const groups = (Array.isArray(report.groups) ? report.groups : []).slice(0, MAX_GROUPS);
  const totals = report.totals || {};
  const by = typeof report.groupBy === "string" ? report.groupBy : "group";
  const caption = h(
    "figcaption",
    { class: "chart-totals" },
    `Revenue by ${by} · total ${money(num(totals.revenue))} from ${count(totals.orders, "order")}, ` +
      count(totals.units, "unit")
  );
  if (!groups.length) {
    return h("figure", { class: "sales-chart" }, caption, h("p", { class: "muted", text: "No sales in this range." }));
  }
  const top = Math.max(...groups.map((g) => num(g.revenue)), 0) || 1;
  const height = groups.length * ROW;
  const chart = svg("svg", {
    width: "100%",
    height,
    role: "img",
    "aria-label": `Bar chart of revenue by ${by}, ${count(groups.length, "group")}`,
    class: "chart",
  });
  groups.forEach((g, i) => {
    const y = i * ROW;
    const pct = Math.max(0.5, (num(g.revenue) / top) * MAX_BAR_PCT);
    const label = plain(g.label ?? g.key ?? "");
    const row = svg("g", { class: "bar-row" });
    row.appendChild(svg("title", {}, `${label}: ${money(num(g.revenue))}, ${count(g.units, "unit")}`));
    row.appendChild(svg("text", { x: 0, y: y + 13, class: "bar-label" }, label.slice(0, 80)));
    row.appendChild(svg("rect", { x: 0, y: y + 18, width: `${pct}%`, height: BAR, rx: 3, class: "bar" }));
    const value = `${money(num(g.revenue))} · ${num(g.units)} sold`;
    row.appendChild(svg("text", { x: `${pct}%`, dx: 6, y: y + 30, class: "bar-value" }, value));
    chart.appendChild(row);
  });
  return h("figure", { class: "sales-chart" }, caption, chart);
}
