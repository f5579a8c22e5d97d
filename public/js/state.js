/* The conversation, kept in localStorage so a reload redraws the chat and the next turn still
 * sends the earlier history to the server. Each tab keeps its own (under a key named by an id
 * in its sessionStorage, which a reload keeps): with one key for all, a reload of tab A after
 * tab B's turn showed B's conversation, and A's was lost (found from outside). The shared key
 * holds the latest conversation of any tab: what a new tab opens. */

import { withoutData } from "./media.js";

const STORE_KEY = "product-mcp.chat.v1";
const TABS_KEY = STORE_KEY + ".tabs"; // { tab key: time of its last save }
const TAB_PREFIX = STORE_KEY + ".tab.";
const KEEP_TABS = 5; // the tabs' own copies kept (the oldest go): storage is ~5 MB
let mine = tabKey();

function tabKey(fresh = false) {
  try {
    let id = fresh ? null : sessionStorage.getItem("product-mcp.tab");
    if (!id) {
      id = Math.random().toString(36).slice(2, 12);
      sessionStorage.setItem("product-mcp.tab", id);
    }
    return TAB_PREFIX + id;
  } catch (e) {
    return null; // storage disabled: the shared key alone (which fails too)
  }
}

/* A duplicated tab starts with a copy of its original's sessionStorage, so with its id: it
 * asks whether another tab has that id and takes a new one if so (review). */
try {
  const channel = new BroadcastChannel("product-mcp.tabs");
  let renamed = false;
  channel.onmessage = (e) => {
    if (e.data && e.data.ask === mine) channel.postMessage({ taken: mine });
    else if (e.data && e.data.taken === mine && !renamed) {
      renamed = true;
      mine = tabKey(true);
      save();
    }
  };
  if (mine) channel.postMessage({ ask: mine });
} catch (e) {
  /* no BroadcastChannel: a duplicated tab shares its original's copy */
}

/* A tab that is still open keeps its copy: when another tab drops it as one of the oldest
 * (KEEP_TABS), it is written again at once (a closed tab's copy stays dropped; found from
 * outside: five short-lived tabs pushed out the copy of one that stayed open). */
let pruning = true;
window.addEventListener("storage", (e) => {
  if (mine && e.key === mine && e.newValue === null && e.storageArea === localStorage) {
    pruning = false; // written back without dropping another's: open tabs never take turns
    try {
      save();
    } finally {
      pruning = true;
    }
  }
});

/* This tab's copy first (after dropping the oldest tabs' copies, to make room), then the
 * shared latest; a tab key no index names (a lost update of the index) goes too. */
function write(text) {
  if (mine) {
    let tabs = {};
    try {
      tabs = JSON.parse(localStorage.getItem(TABS_KEY) || "{}") || {};
    } catch (e) {
      tabs = {};
    }
    tabs[mine] = Date.now();
    const keys = Object.keys(localStorage).filter((k) => k.startsWith(TAB_PREFIX));
    const ranked = [...new Set([...keys, ...Object.keys(tabs)])].sort((x, y) => (tabs[y] || 0) - (tabs[x] || 0));
    for (const key of pruning ? ranked.slice(KEEP_TABS) : []) {
      delete tabs[key];
      localStorage.removeItem(key);
    }
    localStorage.setItem(TABS_KEY, JSON.stringify(tabs));
    localStorage.setItem(mine, text);
  }
  if (pruning) localStorage.setItem(STORE_KEY, text); // (a copy written back is not news)
}

/* history: OpenAI-format messages sent back to the server each turn.
 * items: what the page shows (user/assistant/tool/error), enough to redraw after reload.
 * One object for the page's lifetime: other modules hold it, so it is changed, never replaced. */
export const state = { history: [], items: [] };

export function save() {
  const items = state.items.map(({ node, live, approvalId, ...rest }) => rest);
  try {
    write(JSON.stringify({ history: state.history, items }));
  } catch (e) {
    // storage full (pictures and sounds are big): keep the conversation without them
    const lean = items.map((i) => (i.content ? { ...i, content: withoutData(i.content) } : i));
    try {
      write(JSON.stringify({ history: state.history, items: lean }));
    } catch (e2) {
      /* storage full or disabled: the chat still works */
    }
  }
}

/* A tool call the page went away from (web.py then cancels the turn: stream.py). Certainly
 * nothing was done when it still waited for the user's Approve (web.py had not called it), or
 * when it waited on a purchase confirmation the page had not answered (a question with a
 * quote: main.py buys only on its Accept, and web.py answers the open question "cancel" as it
 * cancels the call): then it is "interrupted", not failed. Anything else may have had its
 * effect: an error ("interrupted"). `items`: the conversation's items (its questions). */
export function cutOff(item, items) {
  // a confirmation not answered, or answered no: main.py bought nothing on it
  const unanswered = (q) =>
    q.kind === "elicitation" && q.request && q.request.id === item.id && q.request.quote &&
    (q.action === "decline" || q.action === "cancel" || (!q.action && !q.answering));
  if (item.status === "approval") {
    item.status = "interrupted";
    item.error = "Interrupted before you answered: it did not run.";
  } else if (item.status === "running" && item.waiting && items.some(unanswered)) {
    item.status = "interrupted";
    item.error = "Interrupted before you confirmed: nothing was bought.";
  } else {
    item.status = "error";
    item.error = item.error || "interrupted";
  }
}

/* What the last page saved; tool calls it left waiting or running show as interrupted. */
export function load() {
  try {
    const raw = (mine && localStorage.getItem(mine)) || localStorage.getItem(STORE_KEY);
    if (!raw) return;
    const data = JSON.parse(raw);
    if (!Array.isArray(data.history) || !Array.isArray(data.items)) return;
    for (const item of data.items) {
      if (item.kind === "tool" && (item.status === "approval" || item.status === "running")) {
        cutOff(item, data.items);
        item.waiting = false;
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
    if (mine) localStorage.removeItem(mine);
  } catch (e) {
    /* storage disabled: nothing was saved */
  }
}
