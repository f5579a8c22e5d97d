/* A tool card: one line by default (server › tool, what came back in a few words, how long it
 * took, its state) that expands to the arguments, a view of the result chosen by js/views.js,
 * and the raw text behind a "Raw" toggle. Errors are red and say what went wrong in words; a
 * running call shows the server's progress; pictures and sounds show without expanding. While
 * a call waits for the user's approval the card is open with Approve / Reject. */

import { h, plain, pretty } from "./dom.js";
import { renderContent } from "./media.js";
import { money } from "./money.js";
import { serverOfTool, toolInfo } from "./tools.js";
import { classify, firstLine, productName, rememberProducts, summarize, view } from "./views.js";

let nextId = 0;

/* fn(), or null if it throws: a server's odd value falls back to the raw text. */
function quietly(fn) {
  try {
    return fn();
  } catch (e) {
    return null;
  }
}

/* "45 ms", "12.3 s", "2.1 min": short, so that a slow call leaves a phone's card line its
 * summary ("12345 ms" cut "4 stock lines" to "4 st…"). */
export function durationText(ms) {
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)} s`; // 59,960 ms is "1.0 min", not "60.0 s"
  return `${(ms / 60_000).toFixed(1)} min`;
}

/* The error in words a person reads, from web.py's text. */
export function errorWords(item) {
  const err = plain(item.error ?? "");
  if (item.status === "rejected") return "Not run: you rejected it.";
  if (item.stopped) return "Stopped before it finished.";
  if (err === "interrupted") return "Interrupted: the page was left or reloaded before it finished.";
  const server = item.server || serverOfTool(item.tool || item.function);
  if (/^unknown tool /.test(err) && server) {
    return `${server} is not connected, so ${item.tool || item.function} could not run.`;
  }
  // "Error executing tool <name>: " is the MCP SDK's wrapper: the card names the tool already.
  return err.replace(/^Error(?: executing tool \S+)?:\s*/, "") || "The tool failed without saying why.";
}

/* A failed card's one line: the service's own words first ("Insufficient stock for … Available:
 * 9"), without main.py's "Failed to create purchase order (400): " before them (the body keeps
 * it all): on a phone the line shows its first words only. */
const ownWords = (text) => text.replace(/^[^:\n]{1,80} \(\d{3}\): /, "");

function stateWords(item) {
  switch (item.status) {
    case "approval":
      return "needs your OK";
    case "running":
      return item.waiting ? "waiting for you" : "running…";
    case "rejected":
      return "rejected";
    case "error":
      return item.stopped ? "stopped" : "failed";
    case "interrupted": // the page went before it ran: nothing was done (state.js cutOff)
      return "not run";
    default:
      return "done";
  }
}

/* A tool's arguments as "name: value" lines (create_purchase's items with product names). */
function argumentList(args) {
  if (!args || typeof args !== "object" || Array.isArray(args)) {
    return h("pre", { class: "args", text: pretty(args) || "{}" });
  }
  const entries = Object.entries(args);
  if (!entries.length) return h("p", { class: "args muted", text: "No arguments." });
  const list = h("dl", { class: "args" });
  for (const [k, v] of entries) {
    let shown;
    if (k === "items" && Array.isArray(v) && v.every((i) => i && Number.isInteger(i.productId))) {
      shown = v.map((i) => `${plain(i.quantity)} × ${productName(i.productId)}`).join(", ");
    } else if (/price|amount|budget/i.test(k) && typeof v === "number") {
      shown = money(v);
    } else shown = typeof v === "string" ? v : JSON.stringify(v);
    list.appendChild(h("dt", { text: k }));
    list.appendChild(h("dd", { text: shown }));
  }
  return list;
}

/* Nothing done yet (a server says 0 of 3 before its slow step) is a bar that moves by itself:
 * "0%" for the whole wait looked stuck (found from outside). */
function progressBar(p) {
  const total = Number.isFinite(p.total) && p.total > 0 && p.progress > 0 ? p.total : null;
  const bar = h("progress", {
    max: total ?? undefined,
    "aria-label": `${p.message || "Progress"}`,
  });
  if (total !== null) bar.value = Math.min(p.progress, total);
  const words = total !== null ? `${Math.round((100 * Math.min(p.progress, total)) / total)}%` : "";
  return h(
    "div",
    { class: "tool-progress" },
    bar,
    h("span", { class: "progress-text", text: [p.message, words].filter(Boolean).join(" · ") })
  );
}

/* Opens or closes a card in place (no redraw: a playing sound keeps playing). */
function toggle(item, card) {
  item.open = !card.classList.contains("open");
  card.classList.toggle("open", item.open);
  const head = card.querySelector(".tool-head");
  head.setAttribute("aria-expanded", item.open ? "true" : "false");
  head.querySelector(".chev").textContent = item.open ? "▾" : "▸";
  const body = card.querySelector(".tool-body");
  body.hidden = !item.open;
  if (item.open) body.scrollIntoView({ block: "nearest" }); // it opened below the fold
}

/* The card for `item`; answer(item, approved) is called by Approve / Reject. */
export function toolCard(item, answer) {
  const id = `tool-body-${++nextId}`;
  const info = toolInfo(item.server, item.tool);
  const server = item.server || serverOfTool(item.tool || item.function) || "?";
  const name = item.tool || item.function || "?";
  const ms = Number.isFinite(item.durationMs) ? durationText(item.durationMs) : "";
  const open = item.status === "approval" || !!item.open;
  const { kind, value } =
    item.result !== undefined ? classify(item.result, info && info.output_schema) : { kind: null, value: undefined };
  if (kind) rememberProducts(kind, value);
  let summary = "";
  if (item.status === "error" || item.status === "rejected" || item.status === "interrupted") summary = firstLine(ownWords(errorWords(item)), 120);
  else if (item.result !== undefined) {
    const none = Array.isArray(value) && !value.length;
    summary = quietly(() => summarize(kind, value)) || (none ? "nothing found" : firstLine(item.result));
  }

  // create_purchase declined or cancelled: it ran, but nothing was done (not a green "done")
  const undone = kind === "outcome" && typeof value.status === "string";
  const card = h("div", {
    class: "tool-card " + (item.status || "running") + (open ? " open" : "") + (undone ? " undone" : ""),
    "data-tool": item.tool || "",
    "data-server": server,
    "data-kind": kind || "",
  });
  const head = h(
    "button",
    {
      type: "button",
      class: "tool-head",
      title: [`${server} › ${name}`, summary, ms].filter(Boolean).join(" · "), // the whole line
      "aria-expanded": open ? "true" : "false",
      "aria-controls": id,
      onclick: () => toggle(item, card),
    },
    h("span", { class: "chev", "aria-hidden": "true", text: open ? "▾" : "▸" }),
    h("span", { class: "srv", text: server }),
    h("span", { class: "sep", "aria-hidden": "true", text: "›" }),
    h("span", { class: "name", text: name }),
    summary ? h("span", { class: "summary", text: summary }) : null,
    ms ? h("span", { class: "dur", text: ms }) : null,
    h("span", { class: "state", text: undone ? value.status : stateWords(item) })
  );
  card.appendChild(head);
  if (item.status === "running" && item.progress) card.appendChild(progressBar(item.progress));

  const body = h("div", { class: "tool-body", id });
  body.hidden = !open;
  body.appendChild(h("div", { class: "label", text: "Arguments" }));
  body.appendChild(argumentList(item.arguments));
  if (item.result !== undefined) {
    const shown = quietly(() => view(kind, value)); // a value the view did not expect: raw only
    body.appendChild(h("div", { class: "label", text: "Result" }));
    const raw = h("pre", { class: "result", text: pretty(item.result) });
    if (shown) {
      body.appendChild(shown);
      raw.hidden = !item.raw;
      const toggle = h("button", {
        type: "button",
        class: "raw-toggle",
        "aria-pressed": item.raw ? "true" : "false",
        text: item.raw ? "Hide raw" : "Raw",
        onclick: () => {
          item.raw = !item.raw;
          raw.hidden = !item.raw;
          toggle.textContent = item.raw ? "Hide raw" : "Raw";
          toggle.setAttribute("aria-pressed", item.raw ? "true" : "false");
        },
      });
      body.appendChild(toggle);
    }
    body.appendChild(raw);
  }
  if (item.error !== undefined) {
    body.appendChild(h("div", { class: "label", text: item.status === "rejected" ? "Rejected" : item.status === "interrupted" ? "Not run" : "Error" }));
    body.appendChild(h("pre", { class: item.status === "interrupted" ? "" : "error-text", text: errorWords(item) }));
  }
  card.appendChild(body);

  if (item.status === "approval") {
    const bar = h("div", { class: "approval-bar", role: "group", "aria-label": "Approve this tool call" });
    bar.appendChild(h("span", { text: "Run this tool? It may change data." }));
    bar.appendChild(
      h("button", { class: "primary approve", type: "button", onclick: () => answer(item, true) }, "Approve")
    );
    bar.appendChild(
      h("button", { class: "danger reject", type: "button", onclick: () => answer(item, false) }, "Reject")
    );
    card.appendChild(bar);
  }
  // pictures, sounds and resources of the result (js/media.js checks what it draws)
  const media = renderContent(item.content, item.result !== undefined ? item.result : item.error);
  if (media) card.appendChild(media);
  return card;
}
