/* The empty chat: a welcome, and example prompts drawn from what the connected tools can do
 * (a tool the page knows gets its own sentence; any other tool a generic one), as buttons that
 * send the prompt. Where the tool list lives is said per layout: on the right on a desktop,
 * behind the "Tools" button on a phone (style.css shows one or the other). */

import { h } from "./dom.js";
import { allTools } from "./tools.js";

const MAX_EXAMPLES = 4;

/* Known tools, in the order their examples are offered. */
const EXAMPLES = [
  ["search_products", "Find wireless earbuds under $1,000"],
  ["get_products", "What products do you sell?"],
  ["get_inventory", "Which products are low on stock?"],
  ["analyze_sales", "Show sales by product as a chart"],
  ["recommend_products", "Recommend a gift for someone who runs"],
  ["get_orders", "Show the latest orders"],
  ["create_purchase", "Buy 1 Galaxy Smart Watch for Ann"],
];

let sendExample = () => {};

/* fn(text): what a click on an example does (js/main.js sends it). */
export function onExample(fn) {
  sendExample = fn;
}

/* Up to four example prompts for the tools connected now. */
export function examples(tools) {
  const names = new Set(tools.map((t) => t.name));
  const out = EXAMPLES.filter(([tool]) => names.has(tool)).map(([, text]) => text);
  for (const t of tools) {
    if (out.length >= MAX_EXAMPLES) break;
    if (!EXAMPLES.some(([tool]) => tool === t.name)) {
      out.push(`What can the ${t.title || t.name} tool of ${t.server} do?`);
    }
  }
  return out.slice(0, MAX_EXAMPLES);
}

export function emptyState() {
  const list = examples(allTools());
  const box = h(
    "div",
    { class: "empty-state" },
    h("h2", { text: "What would you like to know?" }),
    h(
      "p",
      { class: "muted" },
      "Ask about products, stock, orders or sales. The assistant answers with the tools of the " +
        "MCP servers ",
      h("span", { class: "wide-only", text: "listed on the right." }),
      h("span", { class: "narrow-only", text: "under the Tools button." })
    )
  );
  if (list.length) {
    box.appendChild(
      h(
        "ul",
        { class: "examples", "aria-label": "Example prompts" },
        ...list.map((text) =>
          h("li", {}, h("button", { type: "button", class: "example", onclick: () => sendExample(text) }, text))
        )
      )
    );
  }
  return box;
}
