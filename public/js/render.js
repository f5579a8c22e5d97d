/* The message list: user and assistant bubbles, error notes, tool cards (js/cards.js), a
 * server's questions (js/elicit.js), the "thinking" indicator and the empty state with example
 * prompts. Every item of state.items is drawn here and redrawn in place when it changes;
 * replies go through the safe Markdown renderer, everything else is text. */

import { elicitationCard, focusCard, scrollable } from "./elicit.js";
import { toolCard } from "./cards.js";
import { $, h } from "./dom.js";
import { emptyState } from "./empty.js";
import { render as markdown } from "./markdown.js";
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

/* Whether the list is scrolled to (nearly) its end: then what grows there stays in sight. */
export function nearBottom() {
  return messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 48;
}

/* An item that cannot be drawn (a value no renderer expected, from a stored chat or a server)
 * becomes a note; it must never stop the rest of the chat from drawing (it once left the page
 * without its servers after every reload). */
function renderItem(item) {
  try {
    return drawItem(item);
  } catch (e) {
    console.error("could not draw an item of the chat", e, item);
    const node = h("div", { class: "msg error", role: "alert", text: "This part of the chat could not be shown." });
    item.node = node;
    return node;
  }
}

function drawItem(item) {
  let node;
  if (item.kind === "user") {
    node = h("div", { class: "msg user", text: item.text });
  } else if (item.kind === "assistant") {
    node = h("div", { class: "msg assistant" + (item.live ? " streaming" : "") });
    node.appendChild(markdown(item.text));
    if (!item.live) scrollable(node);
  } else if (item.kind === "tool") {
    node = toolCard(item, answerTool);
  } else if (item.kind === "elicitation") {
    node = elicitationCard(item, rerender);
  } else if (item.kind === "note") {
    node = h("div", { class: "msg note", role: "status", text: item.text });
  } else {
    node = h("div", { class: "msg error", role: "alert", text: item.text });
  }
  item.node = node;
  return node;
}

/* Draws an item again where it is (or at the end if it is not on the page yet). */
export function rerender(item) {
  const old = item.node;
  const hadFocus = old && old.contains(document.activeElement);
  const fresh = renderItem(item);
  if (old && old.parentNode) old.parentNode.replaceChild(fresh, old);
  else messagesEl.insertBefore(fresh, thinkingEl && thinkingEl.parentNode ? thinkingEl : null);
  if (hadFocus) fresh.querySelector("button, [tabindex]")?.focus();
}

export function renderAll() {
  messagesEl.textContent = "";
  if (!state.items.length) messagesEl.appendChild(emptyState());
  for (const item of state.items) messagesEl.appendChild(renderItem(item));
  scrollDown();
}

/* The empty state again (the tools it suggests prompts for changed), if the chat is empty. */
export function refreshEmpty() {
  if (!state.items.length) renderAll();
}

/* Appends an item to the conversation and draws it; returns it for later updates. */
export function addItem(item) {
  if (!state.items.length) messagesEl.querySelector(".empty-state")?.remove();
  state.items.push(item);
  rerender(item);
  scrollDown();
  return item;
}

/* Takes an item out of the conversation (a message that was never sent). */
export function removeItem(item) {
  const i = state.items.indexOf(item);
  if (i >= 0) state.items.splice(i, 1);
  item.node?.remove();
}

/* A question card: drawn, scrolled to, and given the focus. */
export function addQuestion(item) {
  addItem(item);
  focusCard(item.node);
  item.node.scrollIntoView({ block: "nearest" });
  return item;
}

let thinkingEl = null;

/* The "thinking" indicator at the end of the list, from Send until the first sign of a reply. */
export function showThinking(on) {
  if (on && !thinkingEl) {
    thinkingEl = h(
      "div",
      { class: "thinking", role: "status", "aria-label": "The assistant is thinking" },
      h("span", { class: "dots", "aria-hidden": "true" }, h("span"), h("span"), h("span")),
      h("span", { text: "Thinking…" })
    );
    messagesEl.appendChild(thinkingEl);
    scrollDown();
  } else if (!on && thinkingEl) {
    thinkingEl.remove();
    thinkingEl = null;
  }
}
