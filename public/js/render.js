/* The message list: user and assistant bubbles, error notes and tool cards (with Approve /
 * Reject while a tool waits). Every item of state.items is drawn here and redrawn in place
 * when it changes; replies go through the safe Markdown renderer, a result's pictures and
 * sounds through js/media.js, everything else is text. */

import { $, h, pretty } from "./dom.js";
import { render as markdown } from "./markdown.js";
import { renderContent } from "./media.js";
import { state } from "./state.js";

const messagesEl = $("messages");

let answerTool = () => {};

/* fn(item, approved): called by a tool card's Approve / Reject buttons. */
export function onAnswer(fn) {
  answerTool = fn;
}

export function scrollDown() {
  messagesEl.scrollTop = messagesEl.scrollHeight;
}

function renderItem(item) {
  let node;
  if (item.kind === "user") {
    node = h("div", { class: "msg user", text: item.text });
  } else if (item.kind === "assistant") {
    node = h("div", { class: "msg assistant" + (item.live ? " streaming" : "") });
    node.appendChild(markdown(item.text));
  } else if (item.kind === "tool") {
    node = renderToolCard(item);
  } else {
    node = h("div", { class: "msg error", text: item.text });
  }
  item.node = node;
  return node;
}

function toolState(item) {
  if (item.status === "approval") return "waiting for your approval";
  if (item.status === "running") return "running…";
  if (item.status === "rejected") return "rejected";
  const ms = item.durationMs !== undefined ? ` · ${item.durationMs} ms` : "";
  return (item.status === "error" ? "error" : "done") + ms;
}

function renderToolCard(item) {
  const card = h("div", { class: "tool-card " + (item.status || "running") });
  card.dataset.tool = item.tool || "";
  card.appendChild(
    h(
      "div",
      { class: "tool-head" },
      h("span", { class: "badge", text: "tool" }),
      h("span", { class: "srv muted", text: item.server || "?" }),
      h("span", { text: "›" }),
      h("span", { class: "name", text: item.tool || item.function || "?" }),
      h("span", { class: "state", text: toolState(item) })
    )
  );
  card.appendChild(h("div", { class: "label", text: "Arguments" }));
  card.appendChild(h("pre", { class: "args", text: pretty(item.arguments) || "{}" }));
  if (item.status === "approval") {
    const bar = h("div", { class: "approval-bar" });
    bar.appendChild(h("span", { text: "Run this tool? It may change data." }));
    const approve = () => answerTool(item, true);
    const reject = () => answerTool(item, false);
    bar.appendChild(
      h("button", { class: "primary approve", type: "button", onclick: approve }, "Approve")
    );
    bar.appendChild(
      h("button", { class: "danger reject", type: "button", onclick: reject }, "Reject")
    );
    card.appendChild(bar);
  }
  if (item.result !== undefined) {
    card.appendChild(h("div", { class: "label", text: "Result" }));
    card.appendChild(h("pre", { class: "result", text: pretty(item.result) }));
  }
  if (item.error !== undefined) {
    const label = item.status === "rejected" ? "Rejected" : "Error";
    card.appendChild(h("div", { class: "label", text: label }));
    card.appendChild(h("pre", { class: "error-text", text: item.error }));
  }
  // pictures, sounds and resources of the result (js/media.js checks what it draws)
  const media = renderContent(item.content, item.result !== undefined ? item.result : item.error);
  if (media) {
    card.appendChild(h("div", { class: "label", text: "Content" }));
    card.appendChild(media);
  }
  return card;
}

/* Draws an item again where it is (or at the end if it is not on the page yet). */
export function rerender(item) {
  const old = item.node;
  const fresh = renderItem(item);
  if (old && old.parentNode) old.parentNode.replaceChild(fresh, old);
  else messagesEl.appendChild(fresh);
}

export function renderAll() {
  messagesEl.textContent = "";
  if (!state.items.length) {
    const hint =
      "Ask about products, stock, orders or sales. " +
      "Tools run on the MCP servers listed on the right.";
    messagesEl.appendChild(h("div", { class: "muted empty", text: hint }));
  }
  for (const item of state.items) messagesEl.appendChild(renderItem(item));
  scrollDown();
}

/* Appends an item to the conversation and draws it; returns it for later updates. */
export function addItem(item) {
  if (!state.items.length) messagesEl.textContent = "";
  state.items.push(item);
  messagesEl.appendChild(renderItem(item));
  scrollDown();
  return item;
}
