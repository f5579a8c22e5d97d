/* A tool result as people read it: which kind of data it is (chosen from the tool's output
 * schema when web.py sends one, else from the data's own shape), a one-line summary for the
 * card's head ("4 products", "Order #12 · 2 × Smart Watch Pro · $2,598.00") and a view for
 * its body: product cards, an inventory or order table, a sales bar chart (js/chart.js).
 * Anything else has no view and shows as text. Stock is drawn by stockBadge(), whose element
 * carries data-product-id and data-stock so live stock updates can find and change it. */

import { salesChart } from "./chart.js";
import { h, plain, plural } from "./dom.js";
import { money } from "./money.js";

const MAX_PARSE_CHARS = 2_000_000; // a bigger result is shown as text, never parsed
const LOW_STOCK = 5;

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/* ------------------------------------------------------------ names of products seen */

const names = new Map(); // productId -> name, from every product the page has shown

function remember(p) {
  if (isObj(p) && Number.isInteger(p.id) && typeof p.name === "string") names.set(p.id, p.name);
}

export function rememberProducts(kind, value) {
  const rows = Array.isArray(value) ? value : [value];
  for (const r of rows) {
    if (!isObj(r)) continue;
    if (kind.startsWith("product")) remember(r);
    else if (kind.startsWith("recommendation")) remember(r.product);
    else if (kind.startsWith("inventory")) remember(r.product);
    else if (kind === "quote" && Number.isInteger(r.productId)) remember({ id: r.productId, name: r.name });
    else if ((kind.startsWith("order") || kind === "outcome") && Array.isArray(r.items)) {
      for (const i of r.items) if (isObj(i)) remember({ id: i.productId, name: i.name }); // lines name them
    }
  }
}

/* A name inside a line of others ("1 × A, 50 × B") as its own bidi island (FSI … PDI) when it
 * holds right-to-left text or a direction control: an override in A turned B's "50" into "05"
 * (found from outside). Other names stay as they are (copied text has nothing hidden). */
// right-to-left scripts, in the BMP and beyond it (Adlam, Hanifi Rohingya...), and controls
const BIDI =
  /[\u0590-\u08ff\u200e\u200f\u202a-\u202e\u2066-\u2069\ufb1d-\ufdff\ufe70-\ufefe\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;
const CONTROLS = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g; // a name's own: its PDI would end ours
export const isolated = (text) =>
  BIDI.test(text) ? `\u2068${text.replace(CONTROLS, "")}\u2069` : text;
export const productName = (id) => (names.has(id) ? isolated(names.get(id)) : `product #${id}`);

/* ------------------------------------------------------------ which kind of data */

/* The kind of one row, from a has(key) test (on a value or on a schema's properties). */
function rowKind(has) {
  if (has("product") && has("score")) return "recommendation";
  if (has("customerName") && has("totalAmount")) return "order";
  if (has("productId") && has("quantity") && has("unitPrice")) return "quote";
  if (has("productId") && has("quantity")) return "inventory";
  if (has("name") && has("price")) return "product";
  if (has("groups") && has("totals")) return "sales";
  if (has("status") && has("message")) return "outcome"; // e.g. "not bought: declined"
  return null;
}

function kindOfValue(v) {
  if (Array.isArray(v)) {
    if (!v.length || !v.every(isObj)) return v.length ? null : "empty";
    const k = rowKind((key) => key in v[0]);
    return k && k !== "sales" && v.every((r) => rowKind((key) => key in r) === k) ? k + "s" : null;
  }
  return isObj(v) ? rowKind((key) => key in v) : null;
}

/* The kind an output schema promises (MCP wraps a list in {"result": [...]}), or null. */
export function kindOfSchema(schema) {
  if (!isObj(schema)) return null;
  let s = schema;
  const props = isObj(s.properties) ? s.properties : {};
  if (Object.keys(props).length === 1 && isObj(props.result)) s = props.result;
  if (s.type === "array" && isObj(s.items) && isObj(s.items.properties)) {
    const k = rowKind((key) => key in s.items.properties);
    return k && k !== "sales" ? k + "s" : null;
  }
  return isObj(s.properties) ? rowKind((key) => key in s.properties) : null;
}

/* The result text parsed, when it is JSON of a size worth parsing; undefined otherwise. */
export function parseResult(text) {
  if (typeof text !== "string") return text;
  const t = text.trimStart();
  if (t.length > MAX_PARSE_CHARS || (t[0] !== "[" && t[0] !== "{")) return undefined;
  try {
    return JSON.parse(t);
  } catch (e) {
    return undefined;
  }
}

/* { kind, value } of a result: the schema's kind when the data has that shape (an empty
 * list included), else the data's own kind; kind null when there is no view for it. */
export function classify(resultText, outputSchema) {
  const value = parseResult(resultText);
  if (value === undefined) return { kind: null, value };
  const own = kindOfValue(value);
  const promised = kindOfSchema(outputSchema);
  if (promised && (own === promised || (own === "empty" && promised.endsWith("s")))) {
    return { kind: promised, value };
  }
  return { kind: own === "empty" ? null : own, value };
}

/* ------------------------------------------------------------ one-line summaries */


function orderSummary(o) {
  const items = Array.isArray(o.items) ? o.items : [];
  const what =
    items.length === 1 && isObj(items[0])
      ? `${plain(items[0].quantity)} × ${productName(items[0].productId)}`
      : plural(items.length, "item");
  return `Order #${o.id} · ${what} · ${money(o.totalAmount)}`;
}

/* The words after "server › tool" in a card's head, or "" when there is nothing to say. */
export function summarize(kind, value) {
  switch (kind) {
    case "products":
      return plural(value.length, "product");
    case "product": {
      const stock = Number.isInteger(value.stock) ? ` · ${stockWords(value.stock)}` : "";
      return `${isolated(plain(value.name))} · ${money(value.price)}${stock}`;
    }
    case "recommendations":
      return plural(value.length, "recommendation");
    case "inventorys": {
      const low = value.filter((r) => r.quantity <= LOW_STOCK).length;
      return plural(value.length, "stock line") + (low ? ` · ${low} low or out` : "");
    }
    case "inventory":
      return `${productName(value.productId)} · ${stockWords(value.quantity)}`;
    case "orders":
      return plural(value.length, "order");
    case "order":
      return orderSummary(value);
    case "outcome":
      // create_purchase not confirmed: its message is written for the model
      if (Array.isArray(value.items) && value.status === "declined") return "Not bought: you declined";
      if (Array.isArray(value.items) && value.status === "cancelled") return "Not bought: cancelled";
      return typeof value.message === "string" ? firstLine(value.message, 120) : plain(value.status);
    case "sales": {
      const t = value.totals || {};
      return `${plural(t.orders, "order")} · ${plural(t.units, "unit")} · ${money(t.revenue)}`;
    }
    default:
      return "";
  }
}

/* The first line of a text result, shortened: the summary of a result with no view. */
export function firstLine(text, max = 80) {
  const line = plain(text ?? "").trimStart().split("\n", 1)[0];
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

/* ------------------------------------------------------------ stock */

function stockWords(n) {
  if (!Number.isFinite(n)) return "stock unknown";
  if (n <= 0) return "out of stock";
  return n <= LOW_STOCK ? `only ${n} left` : `${n} in stock`;
}

function stockLevel(n) {
  if (!Number.isFinite(n)) return "unknown";
  return n <= 0 ? "out" : n <= LOW_STOCK ? "low" : "ok";
}

/* Sets a stock badge's number, words and colour (for live updates too). */
export function setStock(badge, n) {
  badge.dataset.stock = Number.isFinite(n) ? String(n) : "";
  badge.className = "stock " + stockLevel(n);
  badge.textContent = stockWords(n);
}

export function stockBadge(productId, n) {
  const badge = h("span", { "data-product-id": productId });
  setStock(badge, n);
  return badge;
}

/* ------------------------------------------------------------ views */

function productCard(p, stock, extra) {
  return h(
    "li",
    { class: "product-card", "data-product-id": p.id },
    h("span", { class: "pc-name", text: p.name }),
    h("span", { class: "pc-price", text: money(p.price) }),
    Number.isFinite(stock) ? stockBadge(p.id, stock) : null,
    p.description ? h("span", { class: "pc-desc", text: p.description }) : null,
    extra || null
  );
}

/* `kinds`: each column's class: "num" (right-aligned figures), "when" (a date, on one line), or
 * null. Words are never broken to fit: a table wider than its card scrolls. */
function table(label, headers, rows, kinds) {
  const head = h("tr", {}, ...headers.map((t, i) => h("th", { scope: "col", class: kinds[i], text: t })));
  const body = rows.map((cells) => h("tr", {}, ...cells.map((c, i) => h("td", { class: kinds[i] }, c))));
  // focusable, so a table wider than a phone can be scrolled from the keyboard
  const wrap = h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label });
  wrap.appendChild(h("table", { class: "data" }, h("thead", {}, head), h("tbody", {}, ...body)));
  return wrap;
}

// a line names its product (the API's orders do); else the name the page has seen
const lineName = (i) => (typeof i.name === "string" && i.name ? isolated(i.name) : productName(i.productId));
const orderItems = (items) =>
  (Array.isArray(items) ? items : []).map((i) => `${plain(i.quantity)} × ${lineName(i)}`).join(", ");

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? plain(iso ?? "") : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

const VIEWS = {
  products: (v) => h("ul", { class: "product-cards" }, ...v.map((p) => productCard(p, p.stock))),
  product: (v) => h("ul", { class: "product-cards" }, productCard(v, v.stock)),
  recommendations: (v) =>
    h(
      "ul",
      { class: "product-cards" },
      ...v.map((r) => productCard(r.product, r.stock, h("span", { class: "pc-desc", text: r.reason || "" })))
    ),
  inventorys: (v) =>
    table(
      "Stock table",
      ["Product", "Price", "Stock"],
      v.map((r) => [
        r.product ? r.product.name : productName(r.productId),
        r.product ? money(r.product.price) : "",
        stockBadge(r.productId, r.quantity),
      ]),
      [null, "num", null]
    ),
  inventory: (v) => VIEWS.inventorys([v]),
  orders: (v) =>
    table(
      "Orders table",
      ["Order", "Customer", "Items", "Total", "Date"],
      v.map((o) => [`#${o.id}`, o.customerName, orderItems(o.items), money(o.totalAmount), when(o.orderDate)]),
      [null, null, null, "num", "when"]
    ),
  order: (v) => VIEWS.orders([v]),
  sales: (v) => salesChart(v, money),
};

/* The view of a classified result, or null when its kind has none. */
export function view(kind, value) {
  const make = kind && VIEWS[kind];
  if (!make) return null;
  // An empty list: say so (the view drew nothing under its "Result" label).
  if (Array.isArray(value) && !value.length) return h("p", { class: "muted empty-result", text: "Nothing found." });
  try {
    return make(value);
  } catch (e) {
    return null; // a shape the view did not expect: the raw text is shown instead
  }
}
