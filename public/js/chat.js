/* Sending a message: checks it against the server's limits (from GET /api/config, waited for
 * if not loaded yet), streams the reply from /api/chat/stream into bubbles and tool cards,
 * posts Approve / Reject answers, and owns the Send button (disabled while a reply streams
 * and until the limits have loaded). */

import { postJSON } from "./api.js";
import { historyLimits, loadConfig } from "./config.js";
import { $ } from "./dom.js";
import { recentHistory } from "./history.js";
import { addItem, rerender, renderAll, scrollDown } from "./render.js";
import { readSSE } from "./sse.js";
import { clear, save, state } from "./state.js";

const inputEl = $("input");
const sendBtn = $("send");
const askBox = $("ask-approval");

let active = null; // the send in progress: { controller } (an AbortController for its stream)

export function updateSendButton() {
  sendBtn.disabled = active !== null || historyLimits() === null;
}

export async function send(text) {
  if (active || !text.trim()) return;
  const me = (active = { controller: new AbortController() });
  updateSendButton();
  try {
    const limits = historyLimits() || (await loadConfig());
    if (active !== me) return; // "New chat" while the config was loading
    if (!limits) {
      addItem({
        kind: "error",
        text:
          "Cannot send yet: the page has no history limits from web.py (GET /api/config). " +
          "Please try again.",
      });
      return;
    }
    const chars = Array.from(text).length;
    if (chars > limits.maxMessageChars) {
      addItem({
        kind: "error",
        text:
          `Your message has ${chars} characters; ` +
          `the limit is ${limits.maxMessageChars}. Please shorten it.`,
      });
      return;
    }
    await stream(text, limits, me.controller);
  } finally {
    if (active === me) active = null;
    updateSendButton();
  }
}

async function stream(text, limits, controller) {
  const approval = askBox.checked ? "ask" : "auto";
  const history = recentHistory(state.history, { message: text, history: [], approval }, limits);
  addItem({ kind: "user", text });
  save();
  inputEl.value = "";
  let bubble = null; // the assistant item receiving tokens right now
  let pendingPaint = false;
  const cards = new Map();
  let finished = false;
  let textSinceTools = false;

  const paint = () => {
    if (pendingPaint) return;
    pendingPaint = true;
    requestAnimationFrame(() => {
      pendingPaint = false;
      if (bubble) rerender(bubble);
      scrollDown();
    });
  };
  const closeBubble = () => {
    if (bubble) {
      bubble.live = false;
      rerender(bubble);
    }
    bubble = null;
  };

  const handlers = {
    token(d) {
      textSinceTools = true;
      if (!bubble) bubble = addItem({ kind: "assistant", text: "", live: true });
      bubble.text += d.text;
      paint();
    },
    tool_call(d) {
      closeBubble();
      textSinceTools = false;
      cards.set(d.id, addItem({ kind: "tool", status: "running", ...pick(d) }));
      save();
    },
    approval_required(d) {
      const item = cards.get(d.id) || addItem({ kind: "tool", ...pick(d) });
      item.status = "approval";
      item.approvalId = d.approvalId;
      rerender(item);
      scrollDown();
    },
    tool_result(d) {
      const item = cards.get(d.id) || addItem({ kind: "tool", ...pick(d) });
      item.approvalId = null;
      item.durationMs = d.durationMs;
      if (Array.isArray(d.content)) item.content = d.content; // pictures, sounds, resources
      if ("result" in d) {
        item.result = d.result;
        item.status = "ok";
      } else {
        item.error = d.error;
        item.status = d.rejected ? "rejected" : "error";
      }
      rerender(item);
      save();
    },
    done(d) {
      finished = true;
      closeBubble();
      if (!textSinceTools && d.response) addItem({ kind: "assistant", text: d.response });
      state.history = history.concat([{ role: "user", content: text }], d.messages || []);
      save();
    },
    error(d) {
      finished = true;
      closeBubble();
      addItem({ kind: "error", text: d.message || "Something went wrong" });
      save();
    },
  };

  try {
    const body = { message: text, history, approval };
    const response = await postJSON("/api/chat/stream", body, controller.signal);
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const err = await response.json();
        detail = typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail);
      } catch (e) {
        /* keep statusText */
      }
      handlers.error({ message: detail });
    } else {
      await readSSE(response, (event, data) => handlers[event] && handlers[event](data));
      if (!finished) handlers.error({ message: "The reply stream ended unexpectedly." });
    }
  } catch (e) {
    if (e.name !== "AbortError") handlers.error({ message: "Connection problem: " + e.message });
  } finally {
    for (const item of cards.values()) {
      if (item.status === "approval" || item.status === "running") {
        item.status = "error";
        item.error = item.error || "interrupted";
        item.approvalId = null;
        if (item.node && item.node.parentNode) rerender(item);
      }
    }
    save();
    inputEl.focus();
  }
}

function pick(d) {
  return { id: d.id, server: d.server, tool: d.tool, function: d.function, arguments: d.arguments };
}

/* A tool card's Approve / Reject. */
export async function answer(item, approved) {
  if (!item.approvalId) return;
  const id = item.approvalId;
  item.approvalId = null;
  item.status = "running";
  rerender(item);
  try {
    const r = await postJSON("/api/chat/approve", { approvalId: id, approved });
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
  } catch (e) {
    item.status = "error";
    item.error = "Could not send your answer: " + e.message;
    rerender(item);
  }
}

/* "New chat": stops a reply that is streaming and forgets the conversation. */
export function newChat() {
  if (active) active.controller.abort();
  active = null;
  clear();
  updateSendButton();
  renderAll();
  inputEl.focus();
}
