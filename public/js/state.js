/* The conversation, kept in localStorage so a reload redraws the chat and the next turn still
 * sends the earlier history to the server. */

import { withoutData } from "./media.js";

const STORE_KEY = "product-mcp.chat.v1";

/* history: OpenAI-format messages sent back to the server each turn.
 * items: what the page shows (user/assistant/tool/error), enough to redraw after reload.
 * One object for the page's lifetime: other modules hold it, so it is changed, never replaced. */
export const state = { history: [], items: [] };

export function save() {
  const items = state.items.map(({ node, live, approvalId, ...rest }) => rest);
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ history: state.history, items }));
  } catch (e) {
    // storage full (pictures and sounds are big): keep the conversation without them
    const lean = items.map((i) => (i.content ? { ...i, content: withoutData(i.content) } : i));
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({ history: state.history, items: lean }));
    } catch (e2) {
      /* storage full or disabled: the chat still works */
    }
  }
}

/* What the last page saved; tool calls it left waiting or running show as interrupted. */
export function load() {
  try {
    const raw = localStorage.getItem(STORE_KEY);
    if (!raw) return;
    const data = JSON.parse(raw);
    if (!Array.isArray(data.history) || !Array.isArray(data.items)) return;
    for (const item of data.items) {
      if (item.kind === "tool" && (item.status === "approval" || item.status === "running")) {
        item.status = "error";
        item.error = item.error || "interrupted";
      }
      if (item.kind === "elicitation" && !item.action && !item.closedReason) {
        item.closedReason = "interrupted";
      }
    }
    state.history = data.history;
    state.items = data.items;
  } catch (e) {
    forget();
  }
}

export function clear() {
  state.history = [];
  state.items = [];
  forget();
}

function forget() {
  try {
    localStorage.removeItem(STORE_KEY);
  } catch (e) {
    /* storage disabled: nothing was saved */
  }
}
